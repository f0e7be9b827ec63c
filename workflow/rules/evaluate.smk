rule predict:
    input:
        test="results/data/test.csv",
        test_cache=image_cache("test"),
        models=model_files,
    output:
        expand(
            "results/predictions/{{arch}}/seed{{seed}}/{{method}}/{disease}.csv",
            disease=DISEASE_BY_SLUG,
        ),
    log:
        "results/logs/predict/{arch}/seed{seed}/{method}.log",
    benchmark:
        "results/benchmarks/predict/{arch}/seed{seed}/{method}.tsv"
    threads: config["train_threads"]
    resources:
        gpu=scoring_gpus,
    params:
        diseases=list(DISEASE_BY_SLUG.values()),
    script:
        "../scripts/predict.py"


rule assemble_diseases:
    input:
        expand(
            "results/predictions/{{arch}}/seed{{seed}}/{{method}}/{disease}.csv",
            disease=DISEASE_BY_SLUG,
        ),
    output:
        "results/predictions/{arch}/seed{seed}/{method}.csv",
    log:
        "results/logs/assemble_diseases/{arch}/seed{seed}/{method}.log",
    script:
        "../scripts/assemble_diseases.py"


rule ensemble_architectures:
    input:
        ensemble_members,
    output:
        "results/predictions/{ensemble}/seed{seed}/{method}.csv",
    log:
        "results/logs/ensemble_architectures/{ensemble}/seed{seed}/{method}.log",
    params:
        combine=config["ensemble"]["combine"],
    script:
        "../scripts/average_predictions.py"


rule ensemble_seeds:
    input:
        expand(
            "results/predictions/{{predictor}}/seed{seed}/{{method}}.csv",
            seed=SEEDS,
        ),
    output:
        "results/predictions/{predictor}/seeds/{method}.csv",
    log:
        "results/logs/ensemble_seeds/{predictor}/{method}.log",
    params:
        combine=config["ensemble"]["combine"],
    script:
        "../scripts/average_predictions.py"


# With several seeds, the comparison's mean rows resample seeds too: each seed's own tables.
rule summarize:
    input:
        tables=SUMMARY_TABLES,
        seed_tables=SEED_TABLES if len(SEEDS) > 1 else [],
        audit="results/data/label_audit.csv",
        warmups=WARMUP_HISTORIES,
        diagnostics="results/diagnostics.csv",
    output:
        summary="results/summary.csv",
        comparison="results/comparison.csv",
    log:
        "results/logs/summarize.log",
    benchmark:
        "results/benchmarks/summarize.tsv"
    params:
        table_keys=SUMMARY_KEYS,
        seed_keys=SEED_KEYS if len(SEEDS) > 1 else [],
        combine=config["ensemble"]["combine"],
        warmup_keys=WARMUP_KEYS,
        members=ENSEMBLES,
        control=CONTROL,
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
    script:
        "../scripts/summarize.py"


rule summarize_seeds:
    input:
        SEED_TABLES,
    output:
        "results/seeds.csv",
    log:
        "results/logs/summarize_seeds.log",
    params:
        table_keys=SEED_KEYS,
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
    script:
        "../scripts/summarize_seeds.py"
