rule plot_auc_by_architecture:
    input:
        summary="results/summary.csv",
        comparison="results/comparison.csv",
    output:
        png=report(
            "results/figures/auc_by_architecture.png",
            caption="../report/auc_by_architecture.rst",
            category="Results",
        ),
        svg="results/figures/auc_by_architecture.svg",
    log:
        "results/logs/plot_auc_by_architecture.log",
    params:
        code=PLOTS_CODE,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_auc_by_architecture.py"


rule plot_roc:
    input:
        tables=ROC_TABLES,
    output:
        png=report(
            "results/figures/roc_{disease}.png",
            caption="../report/roc.rst",
            category="Results",
            subcategory="ROC curves",
        ),
        svg="results/figures/roc_{disease}.svg",
    log:
        "results/logs/plot_roc/{disease}.log",
    params:
        code=PLOTS_CODE,
        table_keys=ROC_KEYS,
        disease=disease_name,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_roc.py"


rule plot_showcase:
    input:
        table=final_table(
            config["figures"]["showcase_predictor"],
            config["figures"]["showcase_method"],
        ),
    output:
        png=report(
            "results/figures/showcase_grid.png",
            caption="../report/showcase_grid.rst",
            category="Results",
        ),
        svg="results/figures/showcase_grid.svg",
    log:
        "results/logs/plot_showcase.log",
    params:
        code=PLOTS_CODE,
        n_images=config["figures"]["showcase_images"],
        model=f"{config['figures']['showcase_predictor']} {config['figures']['showcase_method']}",
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_showcase.py"


rule plot_training_curves:
    input:
        unpack(training_histories),
    output:
        png=report(
            "results/figures/training_{arch}.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        svg="results/figures/training_{arch}.svg",
    log:
        "results/logs/plot_training_curves/{arch}.log",
    params:
        code=PLOTS_CODE,
        seeds=SEEDS,
        finetune_keys=FINETUNE_HISTORY_KEYS,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_training_curves.py"


rule plot_reliability:
    input:
        unpack(reliability_tables),
    output:
        png=report(
            "results/figures/reliability.png",
            caption="../report/reliability.rst",
            category="Results",
        ),
        svg="results/figures/reliability.svg",
    log:
        "results/logs/plot_reliability.log",
    params:
        code=PLOTS_CODE,
        predictor=config["figures"]["showcase_predictor"],
        methods=METHODS,
        scores_are_logits=lambda wildcards: (
            config["figures"]["showcase_predictor"],
            METHODS[0],
        )
        not in RANK_SCORED,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_reliability.py"


rule plot_subgroups:
    input:
        "results/subgroups.csv",
    output:
        png=report(
            "results/figures/subgroups.png",
            caption="../report/subgroups.rst",
            category="Results",
        ),
        svg="results/figures/subgroups.svg",
    log:
        "results/logs/plot_subgroups.log",
    params:
        code=PLOTS_CODE,
        predictor=config["figures"]["showcase_predictor"],
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_subgroups.py"
