import json
import shlex

from pipeline import backbones
from pipeline.cases import batches as table_batches
from pipeline.sources import source_class


def section(*keys):
    """Config sections as JSON: the params of a step (its rerun trigger) and its command line."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def source_params(*extra):
    """What the case table and downloads depend on: the active source's section and `extra`
    sections (editing another source's section, or signals.target_fs, reruns nothing).
    """
    src = config["source"]
    return json.dumps(
        {"source": src, src: config[src], **{k: config[k] for k in extra}},
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


def pretrained_params():
    """What fetching pretrained weights depends on (geometry is checked by the job that loads them)."""
    keys = ("backbone", "pretrained", "revision")
    return json.dumps({"model": {k: config["model"][k] for k in keys}}, sort_keys=True)


def pretrained_input(wildcards=None):
    """The local directory of model.pretrained (a hub id is fetched there by `pretrained`)."""
    path = backbones.pretrained_dir(config["model"])
    return [str(path)] if path else []


def pretrained_arg():
    return " ".join(f"--pretrained {shlex.quote(p)}" for p in pretrained_input())


def case_table_path():
    return checkpoints.case_table.get(source=config["source"]).output[0]


def batch_ids(wildcards=None):
    """Batch ids of the case table, zero-padded as they appear in file names."""
    return [f"{b:04d}" for b in table_batches(case_table_path())]


def source_file(pattern):
    """Input function: a path under resources/<source>/ for the current batch."""
    return lambda w: pattern.format(source=config["source"], **w)


def shards(split):
    """Input function: the window shards of one split, one per batch."""
    return lambda w: expand(
        "results/windows/{split}/shard-{batch}.h5", split=split, batch=batch_ids()
    )


def window_stats(wildcards):
    return expand("results/windows/stats/batch-{batch}.json", batch=batch_ids())


def all_targets(wildcards):
    return [
        "results/windows/qc.png",
        "results/export/encoder",
        "results/eval/metrics.json",
    ]
