# Val is scored too: what must be chosen before test is read (calibration, operating
# thresholds, ensemble weights) is chosen on val. Each table's probability is calibrated there.
rule predict:
    input:
        val="results/data/val.csv",
        val_cache=image_cache("val"),
        test="results/data/test.csv",
        test_cache=image_cache("test"),
        models=model_files,
    output:
        val=expand(
            "results/predictions/{{arch}}/seed{{seed}}/{{method}}/{disease}.val.csv",
            disease=DISEASE_BY_SLUG,
        ),
        test=expand(
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
        val=expand(
            "results/predictions/{{arch}}/seed{{seed}}/{{method}}/{disease}.val.csv",
            disease=DISEASE_BY_SLUG,
        ),
        test=expand(
            "results/predictions/{{arch}}/seed{{seed}}/{{method}}/{disease}.csv",
            disease=DISEASE_BY_SLUG,
        ),
    output:
        val="results/predictions/{arch}/seed{seed}/{method}.val.csv",
        test="results/predictions/{arch}/seed{seed}/{method}.csv",
    log:
        "results/logs/assemble_diseases/{arch}/seed{seed}/{method}.log",
    script:
        "../scripts/assemble_diseases.py"


# The plain mean of the members: the baseline every weighted ensemble is measured against.
rule ensemble_architectures:
    input:
        unpack(ensemble_members),
    output:
        val="results/predictions/{ensemble}/seed{seed}/{method}.val.csv",
        test="results/predictions/{ensemble}/seed{seed}/{method}.csv",
    log:
        "results/logs/ensemble_architectures/{ensemble}/seed{seed}/{method}.log",
    params:
        combine=config["ensemble"]["combine"],
    script:
        "../scripts/average_predictions.py"


# The same members weighted by forward selection on val (deepauc.evaluation.ensemble): never
# below its best member on val. The weights chosen are written beside it.
rule select_ensemble:
    input:
        unpack(ensemble_members),
    output:
        val=f"results/predictions/{{ensemble}}{SELECTED}/seed{{seed}}/{{method}}.val.csv",
        test=f"results/predictions/{{ensemble}}{SELECTED}/seed{{seed}}/{{method}}.csv",
        weights=f"results/predictions/{{ensemble}}{SELECTED}/seed{{seed}}/{{method}}.weights.csv",
    log:
        f"results/logs/select_ensemble/{{ensemble}}{SELECTED}/seed{{seed}}/{{method}}.log",
    params:
        combine=config["ensemble"]["combine"],
        members=lambda wildcards: ENSEMBLES[wildcards.ensemble],
    script:
        "../scripts/average_predictions.py"


rule ensemble_seeds:
    input:
        val=expand(
            "results/predictions/{{predictor}}/seed{seed}/{{method}}.val.csv",
            seed=SEEDS,
        ),
        test=expand(
            "results/predictions/{{predictor}}/seed{seed}/{{method}}.csv",
            seed=SEEDS,
        ),
    output:
        val="results/predictions/{predictor}/seeds/{method}.val.csv",
        test="results/predictions/{predictor}/seeds/{method}.csv",
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
        val_tables=SUMMARY_VAL_TABLES,
        weights=WEIGHT_TABLES,
        seed_tables=SEED_TABLES if len(SEEDS) > 1 else [],
        audit="results/data/label_audit.csv",
        warmups=WARMUP_HISTORIES,
        diagnostics="results/diagnostics.csv",
        splits=expand("results/data/{split}.csv", split=["val", "test"]),
    output:
        summary=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        comparison=report(
            "results/comparison.csv",
            caption="../report/comparison.rst",
            category="Tables",
        ),
        calibration=report(
            "results/calibration.csv",
            caption="../report/calibration.rst",
            category="Tables",
        ),
        ensemble_weights=report(
            "results/ensemble_weights.csv",
            caption="../report/ensemble_weights.rst",
            category="Tables",
        ),
    log:
        "results/logs/summarize.log",
    benchmark:
        "results/benchmarks/summarize.tsv"
    params:
        table_keys=SUMMARY_KEYS,
        seed_keys=SEED_KEYS if len(SEEDS) > 1 else [],
        weight_keys=WEIGHT_KEYS,
        rank_scored=RANK_SCORED,
        combine=config["ensemble"]["combine"],
        warmup_keys=WARMUP_KEYS,
        members=ENSEMBLE_MEMBERS,
        control=CONTROL,
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
        study_score=config["evaluation"]["study_score"],
    script:
        "../scripts/summarize.py"


# The write-up's question answered for this run in plain words, with what weakens the answer.
rule verdict:
    input:
        comparison="results/comparison.csv",
        diagnostics="results/diagnostics.csv",
        audit="results/data/label_audit.csv",
    output:
        report(
            "results/verdict.md", caption="../report/verdict.rst", category="Verdict"
        ),
    log:
        "results/logs/verdict.log",
    params:
        facts={
            "architectures": ARCHITECTURES,
            "predictors": PREDICTORS,
            "seeds": SEEDS,
            "diseases": list(DISEASE_BY_SLUG.values()),
            "methods": METHODS,
            "image_size": config["image_size"],
            "pretrained": config["pretrained"],
            "synthetic": SYNTHETIC,
            "dataset": f"{TRAIN_CSV} (train and val), {TEST_CSV} (test)",
        },
    script:
        "../scripts/write_verdict.py"


# Per sex, age band and AP/PA (columns of the split tables, where the CSV has them).
rule evaluate_subgroups:
    input:
        tables=SUMMARY_TABLES,
        val_tables=SUMMARY_VAL_TABLES,
        groups="results/data/test_groups.csv",
    output:
        report(
            "results/subgroups.csv",
            caption="../report/subgroups_table.rst",
            category="Tables",
        ),
    log:
        "results/logs/evaluate_subgroups.log",
    benchmark:
        "results/benchmarks/evaluate_subgroups.tsv"
    params:
        table_keys=SUMMARY_KEYS,
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
    script:
        "../scripts/evaluate_subgroups.py"


rule summarize_seeds:
    input:
        tables=SEED_TABLES,
        val_tables=SEED_VAL_TABLES,
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
