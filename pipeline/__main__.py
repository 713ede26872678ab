"""Command line: `python -m pipeline <step> ...`, one step per workflow rule.

Every rule of the Snakefile is one of these commands, so any step can be rerun by hand with the
same command. `--params` takes the rule's own config section(s) as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

log = logging.getLogger("pipeline")


def _setup_logging() -> None:
    os.environ.setdefault("TSFM_PYTHON_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


# The cross-key rules each step's --params are checked with: its stage's (pipeline/<stage>/checks.py);
# the evaluation reads sections of every stage.
_DATA, _MODEL = ("pipeline.data.checks", "CHECKS"), ("pipeline.model.checks", "CHECKS")
CHECKS_OF = {"case-table": _DATA, "download": _DATA, "resample": _DATA, "windows": _DATA, "manifest": _DATA, "labels": _DATA,
             "pretrain": _MODEL, "export": _MODEL, "fetch-pretrained": _MODEL, "evaluate": ("pipeline.evaluation.checks", "STAGE_CHECKS")}


def _params(a) -> dict:
    """The step's --params, checked against the schema (defaults filled) and the cross-key rules of
    its stage (CHECKS_OF) whose sections it holds: a step run by hand with a bad value fails naming
    the key."""
    from pipeline.config import validate_params

    module, name = CHECKS_OF[a.step]
    checks = getattr(importlib.import_module(module), name)
    try:
        return validate_params(json.loads(a.params), checks)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--params: not JSON: {e}") from e


def cmd_case_table(a):
    from pipeline.data.cases import build_case_table, write_table

    rows = build_case_table(_params(a))
    if not rows:
        raise SystemExit("case table is empty: no case has both tracks (check <source>.tracks and cases.*)")
    write_table(a.out, rows)
    log.info("case table: %d cases in %d batches -> %s", len(rows), len({r["batch"] for r in rows}), a.out)


def _batch_rows(cases_path, batch):
    from pipeline.data.cases import read_table

    return [r for r in read_table(cases_path) if r["batch"] == batch]


def cmd_download(a):
    from pipeline.data.download import download_batch

    download_batch(_batch_rows(a.cases, a.batch), _params(a), a.outdir, a.status)


def cmd_resample(a):
    from pipeline.data.resample import resample_batch
    from pipeline.io import read_json

    resample_batch(read_json(a.download_status), _params(a), a.outdir, a.status)


def cmd_windows(a):
    from pipeline.data.windows import windows_batch
    from pipeline.io import read_json

    shards = {"train": a.train, "val": a.val, "test": a.test}
    windows_batch(_batch_rows(a.cases, a.batch), read_json(a.resample_status), _params(a), shards, a.stats, a.batch, a.examples)


def cmd_manifest(a):
    from pipeline.data.windows import build_manifest

    m = build_manifest(a.stats, a.out, _params(a))
    log.info("manifest: %s", json.dumps(m["totals"]))


def _share_cores(a):
    """Intra-op threads and loader workers from the threads the rule gives (pipeline/model/cores.py);
    under torchrun each of the node's processes takes its part."""
    import torch

    from pipeline.model import cores

    per_process = max(1, a.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return cores.apply(per_process, on_gpu=torch.cuda.is_available())


def cmd_pretrain(a):
    from pipeline.io import digest, read_json
    from pipeline.model.train import pretrain

    params = _params(a)
    share = _share_cores(a)
    manifest = read_json(a.manifest)
    data_digest = digest({"manifest": manifest["config_digest"], "totals": manifest["totals"],
                          "shards": sorted(a.train_shards) + sorted(a.val_shards)})
    pretrain(params["model"], params["train"], a.train_shards, a.val_shards, a.outdir, data_digest, num_workers=share.workers,
             pretrained=a.pretrained)


def cmd_export(a):
    from pipeline.model.export import export_encoder

    export_encoder(a.model, a.manifest, a.metrics, a.summary, _params(a), a.out)


def cmd_evaluate(a):
    from pipeline.evaluation.evaluate import evaluate

    p = _params(a)
    _share_cores(a)
    evaluate(a.encoder, a.model, a.train_shards, a.eval_shards, a.cases, a.labels, p["model"], p["train"], p["evaluate"],
             p["labels"], p["signals"]["target_fs"], a.outdir, pretrained=a.pretrained, split=a.split)


def cmd_labels(a):
    from pipeline.data.labels import labels_batch
    from pipeline.io import read_json

    labels_batch(read_json(a.download_status), a.shards, _params(a), a.out)


def cmd_fetch_pretrained(a):
    from pipeline.model.backbones import fetch_pretrained

    fetch_pretrained(_params(a)["model"], a.out)


def cmd_qc(a):
    from pipeline.data.qc_report import qc_gallery, qc_report

    qc_report(a.manifest, a.png, a.html)
    qc_gallery(a.manifest, a.examples, a.gallery)


def cmd_ablation_summary(a):
    from pipeline.evaluation.ablations import write_summary

    rows = write_summary(a.runs, a.tsv, a.png)
    log.info("ablation summary: %d runs -> %s", len(rows), a.tsv)


def _pretrained_arg(s):
    s.add_argument("--pretrained", default=None, help="local directory of the pretrained weights (the rule passes it when model.pretrained is set)")


def _threads_arg(s):
    s.add_argument("--threads", type=int, default=1,
                   help="threads Snakemake gives the rule; capped by the cores this process may use (pipeline/model/cores.py)")


def cmd_config_docs(a):
    from pipeline.config import render_docs

    sys.stdout.write(render_docs())


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per step."""
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = p.add_subparsers(dest="step", required=True)

    def step(name, func, help, params, args=(), lists=(), extra=None):
        """One subcommand: --params (JSON) plus required path options; `lists` take one or more paths."""
        s = sub.add_parser(name, help=help)
        s.add_argument("--params", required=True, help=params)
        for arg in args:
            s.add_argument(f"--{arg}", required=True, type=int if arg == "batch" else str)
        for arg in lists:
            s.add_argument(f"--{arg}", nargs="+", required=True)
        if extra:
            extra(s)
        s.set_defaults(func=func)

    step("case-table", cmd_case_table, "build the case table of the configured source",
         "source, its section, cases and download as JSON", ["out"])
    step("download", cmd_download, "fetch and validate one batch of cases", "source, its section and download as JSON",
         ["cases", "batch", "outdir", "status"])
    step("resample", cmd_resample, "resample one batch of cases to the target rate",
         "source, its tracks and the signals section as JSON", ["download-status", "outdir", "status"])
    step("windows", cmd_windows, "cut, check and shard one batch of cases", "tracks, signals, window and quality as JSON",
         ["cases", "batch", "resample-status", "train", "val", "test", "stats", "examples"])
    step("manifest", cmd_manifest, "merge per-batch window statistics", "signals, window and quality as JSON", ["out"],
         extra=lambda s: s.add_argument("stats", nargs="+"))
    step("pretrain", cmd_pretrain, "self-supervised pretraining (runs under torchrun for DDP)",
         "the model and train sections as JSON", ["manifest", "outdir"], ["train-shards", "val-shards"],
         extra=lambda s: (_threads_arg(s), _pretrained_arg(s)))
    step("export", cmd_export, "export the best encoder (backbone config.json + model.safetensors, preprocessing, card)",
         "tracks, signals and window as JSON", ["model", "manifest", "metrics", "summary", "out"])
    step("evaluate", cmd_evaluate, "probes of the exported encoder vs baselines on the tasks; reconstruction quality",
         "model, train, evaluate, signals and labels as JSON", ["encoder", "model", "cases", "outdir"],
         ["train-shards", "eval-shards", "labels"],
         extra=lambda s: (_threads_arg(s), _pretrained_arg(s),
                          s.add_argument("--split", choices=("val", "test"), required=True,
                                         help="the split --eval-shards hold: val for every choice (ablations), test once for the final table")))
    step("labels", cmd_labels, "per-window blood pressure and hypotension-ahead labels of one batch (numeric tracks)",
         "source, its tracks, labels, window and signals as JSON", ["download-status", "out"], ["shards"])
    step("fetch-pretrained", cmd_fetch_pretrained, "fetch model.pretrained @ model.revision into a local directory (network or HF cache)",
         "the model section as JSON", ["out"])
    s = sub.add_parser("qc", help="data QC plot, table and gallery of kept and rejected windows from the manifest")
    for arg in ("manifest", "png", "html", "gallery"):
        s.add_argument(f"--{arg}", required=True)
    s.add_argument("--examples", nargs="+", required=True, help="the windows stage's examples/batch-N.h5 files")
    s.set_defaults(func=cmd_qc)

    s = sub.add_parser("config-docs", help="config/README.md from the schema: python -m pipeline config-docs > config/README.md")
    s.set_defaults(func=cmd_config_docs)

    s = sub.add_parser("ablation-summary", help="summary.tsv and plot of the ablation runs")
    for arg in ("tsv", "png"):
        s.add_argument(f"--{arg}", required=True)
    s.add_argument("runs", nargs="+", help="run folders results/<source>/ablations/<variant>/seed<seed>")
    s.set_defaults(func=cmd_ablation_summary)

    return p


def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    _setup_logging()
    from pipeline.model.cores import OMP_ENV

    for k, v in OMP_ENV.items():  # before torch loads OpenMP (pipeline/model/cores.py)
        os.environ.setdefault(k, v)
    from pipeline.errors import ConfigError, FailedFractionError, TransientError

    try:
        a.func(a)
    except (ConfigError, TransientError, FailedFractionError) as e:  # a bad --params value, or cases to retry: the message says which
        log.error("%s", e)
        raise SystemExit(f"python -m pipeline {a.step}: {e}") from e


if __name__ == "__main__":
    main()
