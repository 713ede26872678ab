import json

from pipeline.cases import batches as table_batches


def section(*keys):
    """The config sections a rule uses, as JSON for its `params:` (rerun trigger) and command."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def case_table_path():
    return checkpoints.case_table.get(source=config["source"]).output[0]


def batch_ids(wildcards=None):
    """Batch ids of the case table, zero-padded as they appear in file names."""
    return [f"{b:04d}" for b in table_batches(case_table_path())]


def source_file(pattern):
    """Input function: a path under resources/<source>/ for the current batch."""
    return lambda w: pattern.format(source=config["source"], **w)


def window_stats(wildcards):
    return expand("results/windows/stats/batch-{batch}.json", batch=batch_ids())


def all_targets(wildcards):
    return ["results/windows/manifest.json", "results/export/encoder"]
