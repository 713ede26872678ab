# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README).
# Evaluation of the exported encoder (shown in `snakemake --report`).


rule evaluate:
    input:
        encoder="results/export/encoder",
        model="results/pretrain/model.pt",
        cases=source_file("resources/{source}/cases.tsv"),
        train=shards("train"),
        test=shards("test"),
        pretrained=pretrained_input(config["model"]),
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
        "logs/benchmarks/evaluate.tsv"
    threads: 2
    params:
        cfg=section("model", "train", "evaluate", "signals"),
        pretrained=pretrained_arg(config["model"]),
    shell:
        "python -m pipeline evaluate --params {params.cfg:q} --encoder {input.encoder:q} --model {input.model:q}"
        " --cases {input.cases:q} --train-shards {input.train:q} --test-shards {input.test:q}"
        ' --outdir "$(dirname {output.metrics:q})" {params.pretrained} 2> {log:q}'
