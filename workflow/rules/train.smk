# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README);
# per-rule conda envs would each pull torch (GBs) and could drift from what the tests check.
# Pretraining (GPU rule; runs on CPU with a logged note where no GPU exists) and export.


# Pretrained weights arrive the way case files do: fetched where Snakemake runs (the login node
# on a cluster; compute nodes are often offline). The GPU job loads this folder, never the hub.
rule pretrained:
    output:
        directory("resources/pretrained/{name}"),
    log:
        "logs/pretrained/{name}.log",
    localrule: True
    params:
        cfg=pretrained_params,
    shell:
        "python -m pipeline fetch-pretrained --params {params.cfg:q} --out {output:q} 2> {log:q}"


rule pretrain:
    input:
        manifest="results/{source}/windows/manifest.json",
        train=shards("train"),
        val=shards("val"),
        pretrained=pretrained_input(config["model"]),
    output:
        model="results/{source}/pretrain/model.pt",
        metrics="results/{source}/pretrain/metrics.csv",
        summary="results/{source}/pretrain/summary.json",
        loss=report(
            "results/{source}/pretrain/loss.png",
            caption="../report/loss.rst",
            category="Pretraining",
        ),
        recon=report(
            "results/{source}/pretrain/reconstruction.png",
            caption="../report/reconstruction.rst",
            category="Pretraining",
        ),
    log:
        "logs/{source}/pretrain.log",
    benchmark:
        "logs/{source}/benchmarks/pretrain.tsv"
    # the job splits these between torch's threads and loader workers, capped by the cores it may
    # use (pipeline/model/cores.py); under torchrun each process takes its part
    threads: 4
    resources:
        gpu=1,
    params:
        cfg=section("model", "train"),
        pretrained=pretrained_arg(config["model"]),
    shell:
        # one process per GPU: torchrun (DDP) when the rule is given more than one GPU
        "launch=python; if [ {resources.gpu} -gt 1 ]; then"
        " launch='python -m torch.distributed.run --standalone --nproc_per_node {resources.gpu}'; fi;"
        " $launch -m pipeline pretrain --params {params.cfg:q} --manifest {input.manifest:q}"
        ' --train-shards {input.train:q} --val-shards {input.val:q} --outdir "$(dirname {output.model:q})"'
        " --threads {threads} {params.pretrained} 2> {log:q}"


rule export:
    input:
        model="results/{source}/pretrain/model.pt",
        manifest="results/{source}/windows/manifest.json",
        metrics="results/{source}/pretrain/metrics.csv",
        summary="results/{source}/pretrain/summary.json",
    output:
        directory("results/{source}/export/encoder"),
    log:
        "logs/{source}/export.log",
    # deterministic: a retry cannot succeed where this failed (docs/design.md, "Faults")
    retries: 0
    params:
        cfg=tracks_params("signals", "window", "source"),
    shell:
        "python -m pipeline export --params {params.cfg:q} --model {input.model:q} --manifest {input.manifest:q}"
        " --metrics {input.metrics:q} --summary {input.summary:q} --out {output:q} 2> {log:q}"
