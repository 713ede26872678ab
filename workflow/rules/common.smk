import json
import re
import shlex
from pathlib import Path

from pipeline.model import backbones
from pipeline.evaluation.ablations import run_config, trained_runs, variants
from pipeline.data.cases import batches as table_batches
from pipeline.data.sources import source_class

# Everything derived from a source lives under results/<source>/ (logs under logs/<source>/): a
# switch of source never reuses another source's outputs, and the {source} wildcard only ever
# takes the configured source (docs/design.md, "File layout").
SOURCE = config["source"]
ABLATION_VARIANTS = variants(config)  # none when ablations.enabled is false


wildcard_constraints:
    source=re.escape(SOURCE),


def section(*keys):
    """Config sections as JSON: the params of a step (its rerun trigger) and its command line."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def source_params(*extra, **keys):
    """What the case table and downloads depend on: the active source's section, `extra`
    sections, and for each `section=(key, ...)` those keys of it only (editing another source's
    section, or signals.target_fs, reruns nothing).
    """
    src = config["source"]
    parts = {k: {key: config[k][key] for key in v} for k, v in keys.items()}
    return json.dumps(
        {"source": src, src: config[src], **{k: config[k] for k in extra}, **parts},
        sort_keys=True,
    )


def reader_params(*extra):
    """What reading a fetched case needs: the source and its track names (docs/design.md)."""
    src = config["source"]
    parts = {"source": src, src: {"tracks": config[src]["tracks"]}}
    return json.dumps({**parts, **{k: config[k] for k in extra}}, sort_keys=True)


def tracks_params(*extra):
    """The active source's track names in channel order, plus `extra` sections."""
    src = config["source"]
    parts = {"tracks": source_class(src)(config[src]).tracks()}
    return json.dumps({**parts, **{k: config[k] for k in extra}}, sort_keys=True)


# the full config of every ablation run (pipeline/evaluation/ablations.py), built once
RUN_CONFIGS = {
    (v, s): run_config(config, v, s)
    for v in ABLATION_VARIANTS
    for s in config["ablations"]["seeds"]
}


ABLATION_RUN = "results/{source}/ablations/{variant}/seed{seed}"
# a variant that changes only `evaluate` is evaluated on the encoder of the earlier variant that
# trains the same model, and a run that trains the main run's model on the main run's encoder
# (pipeline.evaluation.ablations.trained_runs): no second identical pretraining
TRAINED_RUNS = trained_runs(config) if ABLATION_VARIANTS else {}


def trained_folder(source, variant, seed):
    """The run folder whose pretraining and export ablation run (variant, seed) evaluates (the main
    run's results/<source> holds pretrain/ and export/ as a run folder does)."""
    by = TRAINED_RUNS[variant, int(seed)]
    if by is None:
        return f"results/{source}"
    return ABLATION_RUN.format(source=source, variant=by, seed=seed)


def trained_run(w):
    return trained_folder(w.source, w.variant, w.seed)


def trained_summaries(wildcards):
    """The pretraining summary of every training the ablation runs evaluate."""
    return sorted(
        {
            f"{trained_folder(wildcards.source, v, s)}/pretrain/summary.json"
            for v, s in TRAINED_RUNS
        }
    )


def ablation_run_dirs():
    """Every run folder of the ablations, quoted for the shell."""
    return " ".join(
        shlex.quote(ABLATION_RUN.format(source=SOURCE, variant=v, seed=s))
        for v in ABLATION_VARIANTS
        for s in config["ablations"]["seeds"]
    )


def run_section(*keys):
    """Params function: sections of one ablation run's config (its rerun trigger)."""
    return lambda w: json.dumps(
        {k: RUN_CONFIGS[w.variant, int(w.seed)][k] for k in keys}, sort_keys=True
    )


def run_model(w):
    return RUN_CONFIGS[w.variant, int(w.seed)]["model"]


def run_pretrained_input(w):
    return pretrained_input(run_model(w))


def pretrained_params(wildcards):
    """What fetching one pretrained folder depends on (geometry is checked by the job that loads it)."""
    keys = ("backbone", "pretrained", "revision")
    for m in [config["model"]] + [c["model"] for c in RUN_CONFIGS.values()]:
        path = backbones.pretrained_dir(m)
        if path and Path(path).name == wildcards.name:
            return json.dumps({"model": {k: m[k] for k in keys}}, sort_keys=True)
    raise ValueError(f"no model section of the config asks for {wildcards.name}")


def pretrained_input(model_cfg):
    """The local directory of model_cfg's pretrained weights (a hub id is fetched there by the
    `pretrained` rule), as an input list; empty when it trains from scratch."""
    path = backbones.pretrained_dir(model_cfg)
    return [str(path)] if path else []


def pretrained_arg(model_cfg):
    path = backbones.pretrained_dir(model_cfg)
    return f"--pretrained {shlex.quote(str(path))}" if path else ""


def case_table_path():
    return checkpoints.case_table.get(source=config["source"]).output[0]


def batch_ids(wildcards=None):
    """Batch ids of the case table, zero-padded as they appear in file names."""
    return [f"{b:04d}" for b in table_batches(case_table_path())]


def source_file(pattern):
    """Input function: a path under resources/<source>/ for the current batch."""
    return lambda w: pattern.format(**{**w, "source": SOURCE})


def shards(split):
    """Input function: the window shards of one split, one per batch."""
    return lambda w: expand(
        "results/{source}/windows/{split}/shard-{batch}.h5",
        source=SOURCE,
        split=split,
        batch=batch_ids(),
    )


def label_files(wildcards):
    return expand(
        "results/{source}/labels/batch-{batch}.tsv", source=SOURCE, batch=batch_ids()
    )


def window_stats(wildcards):
    return expand(
        "results/{source}/windows/stats/batch-{batch}.json",
        source=SOURCE,
        batch=batch_ids(),
    )


def window_examples(wildcards):
    return expand(
        "results/{source}/windows/examples/batch-{batch}.h5",
        source=SOURCE,
        batch=batch_ids(),
    )


def all_targets(wildcards):
    ablations = ["ablations/summary.tsv"] if ABLATION_VARIANTS else []
    return [
        f"results/{SOURCE}/{path}"
        for path in ["windows/qc.png", "export/encoder", "eval/metrics.json"]
        + ablations
    ]
