# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README).
# Labels and the evaluation of the exported encoder (shown in `snakemake --report`).


# Per-window labels from the numeric tracks of the files already downloaded (pipeline/data/labels.py).
# Its params hold the labels section: editing it reruns labels and the evaluations, nothing upstream.
rule labels:
    input:
        download=source_file("resources/{source}/cases/batch-{batch}.json"),
        train="results/{source}/windows/train/shard-{batch}.h5",
        val="results/{source}/windows/val/shard-{batch}.h5",
        test="results/{source}/windows/test/shard-{batch}.h5",
    output:
        "results/{source}/labels/batch-{batch}.tsv",
    log:
        "logs/{source}/labels/batch-{batch}.log",
    benchmark:
        "logs/{source}/benchmarks/labels/batch-{batch}.tsv"
    params:
        cfg=reader_params("labels", "window", "signals"),
    shell:
        "python -m pipeline labels --params {params.cfg:q} --download-status {input.download:q}"
        " --shards {input.train:q} {input.val:q} {input.test:q} --out {output:q} 2> {log:q}"


rule evaluate:
    input:
        encoder="results/{source}/export/encoder",
        model="results/{source}/pretrain/model.pt",
        cases=source_file("resources/{source}/cases.tsv"),
        train=shards("train"),
        scored=shards("test"),  # the locked test split, scored once (docs/design.md, "The locked test split")
        labels=label_files,
        pretrained=pretrained_input(config["model"]),
    output:
        metrics="results/{source}/eval/metrics.json",
        plot=report(
            "results/{source}/eval/probes.png",
            caption="../report/probes.rst",
            category="Evaluation",
        ),
        roc=report(
            "results/{source}/eval/roc.png",
            caption="../report/roc.rst",
            category="Evaluation",
        ),
        calibration=report(
            "results/{source}/eval/calibration.png",
            caption="../report/calibration.rst",
            category="Evaluation",
        ),
        hypotension=report(
            "results/{source}/eval/hypotension.png",
            caption="../report/hypotension.rst",
            category="Evaluation",
        ),
        efficiency=report(
            "results/{source}/eval/label_efficiency.png",
            caption="../report/label_efficiency.rst",
            category="Evaluation",
        ),
        table=report(
            "results/{source}/eval/probes.html",
            caption="../report/probes_table.rst",
            category="Evaluation",
        ),
        headline="results/{source}/eval/headline.rst",  # the report's landing page (Snakefile)
        card="results/{source}/eval/model_card.md",  # the export's card with these results
    log:
        "logs/{source}/evaluate.log",
    benchmark:
        "logs/{source}/benchmarks/evaluate.tsv"
    # deterministic: a retry cannot succeed where this failed (docs/design.md, "Faults")
    retries: 0
    threads: 2
    # embeddings and the labelled training run on the GPU where there is one; on a small machine the
    # resource also keeps evaluations from competing with pretraining for the same cores
    resources:
        gpu=1,
    params:
        cfg=section("model", "train", "evaluate", "signals", "labels"),
        pretrained=pretrained_arg(config["model"]),
        split="test",
    shell:
        "python -m pipeline evaluate --params {params.cfg:q} --encoder {input.encoder:q} --model {input.model:q}"
        " --cases {input.cases:q} --train-shards {input.train:q} --eval-shards {input.scored:q} --split {params.split}"
        " --labels {input.labels:q}"
        ' --outdir "$(dirname {output.metrics:q})" --threads {threads} {params.pretrained} 2> {log:q}'
