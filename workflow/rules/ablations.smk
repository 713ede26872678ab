# Lint left on purpose: `snakemake --lint` asks for a conda env or container per rule. Every rule
# runs `python -m pipeline` from the one environment installed from pyproject.toml (README).
# Ablations (docs/design.md, "Ablations"): each variant of config `ablations.variants`, once per seed
# of `ablations.seeds`, pretrained, exported and evaluated under results/<source>/ablations/{variant}/seed{seed}/
# by the same rules as the main run (use rule ... with), from the same shards.


wildcard_constraints:
    variant="|".join(re.escape(v) for v in ABLATION_VARIANTS) or "(?!)",
    seed=r"\d+",


use rule pretrain as ablation_pretrain with:
    input:
        manifest="results/{source}/windows/manifest.json",
        train=shards("train"),
        val=shards("val"),
        pretrained=run_pretrained_input,
    output:
        model=f"{ABLATION_RUN}/pretrain/model.pt",
        metrics=f"{ABLATION_RUN}/pretrain/metrics.csv",
        summary=f"{ABLATION_RUN}/pretrain/summary.json",
        loss=f"{ABLATION_RUN}/pretrain/loss.png",
        recon=f"{ABLATION_RUN}/pretrain/reconstruction.png",
    log:
        "logs/{source}/ablations/{variant}/seed{seed}/pretrain.log",
    benchmark:
        "logs/{source}/benchmarks/ablations/{variant}-seed{seed}-pretrain.tsv"
    params:
        cfg=run_section("model", "train"),
        pretrained=lambda w: pretrained_arg(run_model(w)),
        split="val",


use rule export as ablation_export with:
    input:
        model=f"{ABLATION_RUN}/pretrain/model.pt",
        manifest="results/{source}/windows/manifest.json",
        metrics=f"{ABLATION_RUN}/pretrain/metrics.csv",
        summary=f"{ABLATION_RUN}/pretrain/summary.json",
    output:
        directory(f"{ABLATION_RUN}/export/encoder"),
    log:
        "logs/{source}/ablations/{variant}/seed{seed}/export.log",


use rule evaluate as ablation_evaluate with:
    input:
        encoder=lambda w: f"{trained_run(w)}/export/encoder",
        model=lambda w: f"{trained_run(w)}/pretrain/model.pt",
        cases=source_file("resources/{source}/cases.tsv"),
        train=shards("train"),
        scored=shards("val"),  # every choice is made on the validation split, never on test
        labels=label_files,
        pretrained=run_pretrained_input,
    output:
        metrics=f"{ABLATION_RUN}/eval/metrics.json",
        plot=f"{ABLATION_RUN}/eval/probes.png",
        roc=f"{ABLATION_RUN}/eval/roc.png",
        calibration=f"{ABLATION_RUN}/eval/calibration.png",
        hypotension=f"{ABLATION_RUN}/eval/hypotension.png",
        efficiency=f"{ABLATION_RUN}/eval/label_efficiency.png",
        table=f"{ABLATION_RUN}/eval/probes.html",
        headline=f"{ABLATION_RUN}/eval/headline.rst",
        card=f"{ABLATION_RUN}/eval/model_card.md",
    log:
        "logs/{source}/ablations/{variant}/seed{seed}/evaluate.log",
    benchmark:
        "logs/{source}/benchmarks/ablations/{variant}-seed{seed}-evaluate.tsv"
    params:
        cfg=run_section("model", "train", "evaluate", "signals", "labels"),
        pretrained=lambda w: pretrained_arg(run_model(w)),
        split="val",


rule ablation_summary:
    input:
        expand(
            "results/{source}/ablations/{variant}/seed{seed}/eval/metrics.json",
            variant=list(ABLATION_VARIANTS),
            seed=config["ablations"]["seeds"],
            allow_missing=True,
        ),
        trained_summaries,
    output:
        tsv="results/{source}/ablations/summary.tsv",
        png=report(
            "results/{source}/ablations/summary.png",
            caption="../report/ablations.rst",
            category="Ablations",
        ),
    log:
        "logs/{source}/ablations/summary.log",
    # deterministic: a retry cannot succeed where this failed (docs/design.md, "Faults")
    retries: 0
    localrule: True
    params:
        runs=ablation_run_dirs(),
    shell:
        "python -m pipeline ablation-summary --tsv {output.tsv:q} --png {output.png:q} {params.runs} 2> {log:q}"
