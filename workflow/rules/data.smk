# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README);
# per-rule conda envs would each pull torch (GBs) and could drift from what the tests check.
# Data stages. Per-batch jobs (batch = caseid // cases.batch_size): a full VitalDB run is ~100 jobs
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
        "resources/{source}/vital/batch-{batch}.json",
    log:
        "logs/{source}/download/batch-{batch}.log",
    benchmark:
        "benchmarks/download/{source}-batch-{batch}.tsv"
    localrule: True
    params:
        cfg=source_params("download"),
    shell:
        "python -m pipeline download --params {params.cfg:q} --cases {input:q} --batch {wildcards.batch}"
        " --outdir resources/{wildcards.source}/vital --status {output:q} 2> {log:q}"


rule resample:
    input:
        source_file("resources/{source}/vital/batch-{batch}.json"),
    output:
        "results/resampled/batch-{batch}.json",
    log:
        "logs/resample/batch-{batch}.log",
    benchmark:
        "benchmarks/resample/batch-{batch}.tsv"
    params:
        cfg=section("signals"),
    shell:
        "python -m pipeline resample --params {params.cfg:q} --download-status {input:q}"
        " --outdir results/resampled --status {output:q} 2> {log:q}"


rule windows:
    input:
        cases=source_file("resources/{source}/cases.tsv"),
        resampled="results/resampled/batch-{batch}.json",
    output:
        train="results/windows/train/shard-{batch}.h5",
        val="results/windows/val/shard-{batch}.h5",
        test="results/windows/test/shard-{batch}.h5",
        stats="results/windows/stats/batch-{batch}.json",
    log:
        "logs/windows/batch-{batch}.log",
    benchmark:
        "benchmarks/windows/batch-{batch}.tsv"
    params:
        cfg=section("signals", "window", "quality"),
    shell:
        "python -m pipeline windows --params {params.cfg:q} --cases {input.cases:q} --batch {wildcards.batch}"
        " --resample-status {input.resampled:q} --train {output.train:q} --val {output.val:q}"
        " --test {output.test:q} --stats {output.stats:q} 2> {log:q}"


rule manifest:
    input:
        window_stats,
    output:
        "results/windows/manifest.json",
    log:
        "logs/windows/manifest.log",
    localrule: True
    params:
        cfg=section("signals", "window", "quality"),
    shell:
        "python -m pipeline manifest --params {params.cfg:q} --out {output:q} {input:q} 2> {log:q}"
