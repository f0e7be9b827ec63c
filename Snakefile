from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/use.smk"


# On a cluster these run in the Snakemake process itself: they read a few CSVs or draw a figure,
# in less time than a job would wait in the queue.
localrules:
    all,
    search_rates,
    select_lr,
    diagnose,
    summarize,
    verdict,
    evaluate_subgroups,
    image_groups,
    summarize_seeds,
    assemble_diseases,
    ensemble_architectures,
    select_ensemble,
    ensemble_seeds,
    plot_auc_by_architecture,
    plot_roc,
    plot_showcase,
    plot_reliability,
    plot_subgroups,
    plot_training_curves,
    plot_synthetic_examples,
    model_card,
    export,


rule all:
    input:
        default_targets(),


# Every rule runs in the one environment of envs/deepauc.yaml (with `--sdm conda`).
use_one_conda_env(workflow.rules)
# Nothing outside results/ is written: a user's data stays as it was.
check_outputs_stay_in_results(workflow.rules)
