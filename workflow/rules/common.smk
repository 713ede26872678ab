import json

from pipeline.cases import batches as table_batches


def section(*keys):
    """Config sections as JSON: the params of a step (its rerun trigger) and its command line."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def source_params(*extra):
    """What the case table and downloads depend on: the active source's section, the track names
    and `extra` sections (editing signals.target_fs or another source's section reruns nothing).
    """
    src = config["source"]
    tracks = {k: config["signals"][k] for k in ("ppg_track", "ecg_track")}
    parts = {
        "source": src,
        src: config[src],
        "signals": tracks,
        **{k: config[k] for k in extra},
    }
    return json.dumps(parts, sort_keys=True)


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
