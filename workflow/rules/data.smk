# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README);
# per-rule conda envs would each pull torch (GBs) and could drift from what the tests check.
# Data stages and their QC (shown in `snakemake --report`). Per-batch jobs (batch = caseid // cases.batch_size): a full VitalDB run is ~100 jobs
# per stage, and the DAG of 6,388 cases builds in about a second.


checkpoint case_table:
    output:
        "resources/{source}/cases.tsv",
    log:
        "logs/{source}/case_table.log",
    localrule: True
    params:
        cfg=source_params("cases", "download"),
    shell:
        "python -m pipeline case-table --params {params.cfg:q} --out {output:q} 2> {log:q}"


# Downloads stay on the machine that runs Snakemake: compute nodes are often offline.
rule download:
    input:
        "resources/{source}/cases.tsv",
    output:
        "resources/{source}/cases/batch-{batch}.json",
    log:
        "logs/{source}/download/batch-{batch}.log",
    benchmark:
        "logs/{source}/benchmarks/download/batch-{batch}.tsv"
    localrule: True
    params:
        # the sample budget bounds what validating a file may cost (pipeline/data/sources/_vitalfile.py)
        cfg=source_params("download", signals=("max_case_hours", "max_native_hz")),
    shell:
        "python -m pipeline download --params {params.cfg:q} --cases {input:q} --batch {wildcards.batch}"
        " --outdir resources/{wildcards.source}/cases --status {output:q} 2> {log:q}"


rule resample:
    input:
        source_file("resources/{source}/cases/batch-{batch}.json"),
    output:
        "results/{source}/resampled/batch-{batch}.json",
    log:
        "logs/{source}/resample/batch-{batch}.log",
    benchmark:
        "logs/{source}/benchmarks/resample/batch-{batch}.tsv"
    params:
        cfg=reader_params("signals"),
    shell:
        "python -m pipeline resample --params {params.cfg:q} --download-status {input:q}"
        " --outdir results/{wildcards.source}/resampled --status {output:q} 2> {log:q}"


rule windows:
    input:
        cases=source_file("resources/{source}/cases.tsv"),
        resampled="results/{source}/resampled/batch-{batch}.json",
    output:
        train="results/{source}/windows/train/shard-{batch}.h5",
        val="results/{source}/windows/val/shard-{batch}.h5",
        test="results/{source}/windows/test/shard-{batch}.h5",
        stats="results/{source}/windows/stats/batch-{batch}.json",
        examples="results/{source}/windows/examples/batch-{batch}.h5",
    log:
        "logs/{source}/windows/batch-{batch}.log",
    benchmark:
        "logs/{source}/benchmarks/windows/batch-{batch}.tsv"
    params:
        cfg=tracks_params("signals", "window", "quality"),
    shell:
        "python -m pipeline windows --params {params.cfg:q} --cases {input.cases:q} --batch {wildcards.batch}"
        " --resample-status {input.resampled:q} --train {output.train:q} --val {output.val:q}"
        " --test {output.test:q} --stats {output.stats:q} --examples {output.examples:q} 2> {log:q}"


rule manifest:
    input:
        window_stats,
    output:
        "results/{source}/windows/manifest.json",
    log:
        "logs/{source}/windows/manifest.log",
    # deterministic: a retry cannot succeed where this failed (docs/design.md, "Faults")
    retries: 0
    localrule: True
    params:
        cfg=tracks_params("signals", "window", "quality"),
    shell:
        "python -m pipeline manifest --params {params.cfg:q} --out {output:q} {input:q} 2> {log:q}"


rule qc:
    input:
        manifest="results/{source}/windows/manifest.json",
        examples=window_examples,
    output:
        png=report(
            "results/{source}/windows/qc.png",
            caption="../report/qc.rst",
            category="Data QC",
        ),
        table=report(
            "results/{source}/windows/qc.html",
            caption="../report/qc_table.rst",
            category="Data QC",
        ),
        gallery=report(
            "results/{source}/windows/qc_gallery.png",
            caption="../report/qc_gallery.rst",
            category="Data QC",
        ),
    log:
        "logs/{source}/windows/qc.log",
    # deterministic: a retry cannot succeed where this failed (docs/design.md, "Faults")
    retries: 0
    localrule: True
    shell:
        "python -m pipeline qc --manifest {input.manifest:q} --examples {input.examples:q} --png {output.png:q}"
        " --html {output.table:q} --gallery {output.gallery:q} 2> {log:q}"
