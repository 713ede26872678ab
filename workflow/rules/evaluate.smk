# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README).
# Evaluation of the exported encoder and the data QC shown in `snakemake --report`.


rule qc:
    input:
        "results/windows/manifest.json",
    output:
        png=report(
            "results/windows/qc.png", caption="../report/qc.rst", category="Data QC"
        ),
        table=report(
            "results/windows/qc.html",
            caption="../report/qc_table.rst",
            category="Data QC",
        ),
    log:
        "logs/windows/qc.log",
    localrule: True
    shell:
        "python -m pipeline qc --manifest {input:q} --png {output.png:q} --html {output.table:q} 2> {log:q}"


rule evaluate:
    input:
        encoder="results/export/encoder",
        model="results/pretrain/model.pt",
        cases=source_file("resources/{source}/cases.tsv"),
        train=lambda w: expand(
            "results/windows/train/shard-{batch}.h5", batch=batch_ids()
        ),
        test=lambda w: expand(
            "results/windows/test/shard-{batch}.h5", batch=batch_ids()
        ),
    output:
        metrics="results/eval/metrics.json",
        plot=report(
            "results/eval/probes.png",
            caption="../report/probes.rst",
            category="Evaluation",
        ),
        table=report(
            "results/eval/probes.html",
            caption="../report/probes_table.rst",
            category="Evaluation",
        ),
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate.tsv"
    threads: 2
    params:
        cfg=section("source", "model", "train", "evaluate", "signals"),
    shell:
        "python -m pipeline evaluate --params {params.cfg:q} --encoder {input.encoder:q} --model {input.model:q}"
        " --cases {input.cases:q} --train-shards {input.train:q} --test-shards {input.test:q}"
        " --outdir results/eval 2> {log:q}"
