# Using the trained models: export, scoring new images, the model card, saliency (docs/use.md).
# Nothing here trains: every input is a model or a table the training rules already made.


# A predictor as a folder to hand over: safetensors + card.json + TorchScript, with the
# exported model's outputs checked against the pipeline's scoring of test images.
rule export_predictor:
    input:
        unpack(export_inputs),
    output:
        [f"results/export/{{predictor}}/{{method}}/{name}" for name in EXPORT_FILES],
    log:
        "results/logs/export_predictor/{predictor}/{method}.log",
    threads: config["train_threads"]
    params:
        plan=lambda wildcards: predictor_plan(wildcards.predictor, wildcards.method),
        diseases=list(DISEASE_BY_SLUG.values()),
        config_files=[os.path.relpath(f) for f in CONFIG_FILES],
    script:
        "../scripts/export_predictor.py"


# Every architecture's selected models and each ensemble, with the methods of `inference`,
# exported at once: `snakemake --cores 8 export`.
rule export:
    input:
        [
            f"{export_folder(p, m)}/card.json"
            for p in PREDICTORS
            for m in INFERENCE_METHODS
        ],


# New images through the exported predictors; never retrains. Unreadable images are listed.
rule score_images:
    input:
        unpack(image_set_inputs),
    output:
        scores="results/inference/{image_set}.csv",
        skipped="results/inference/{image_set}.skipped.csv",
        metrics="results/inference/{image_set}.metrics.csv",
    log:
        "results/logs/score_images/{image_set}.log",
    threads: config["train_threads"]
    resources:
        gpu=scoring_gpus,
    params:
        image_set=lambda wildcards: IMAGE_SETS[wildcards.image_set],
        predictor_keys=INFERENCE_KEYS,
        diseases=list(DISEASE_BY_SLUG.values()),
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
    script:
        "../scripts/score_images.py"


rule model_card:
    input:
        summary="results/summary.csv",
        comparison="results/comparison.csv",
        calibration="results/calibration.csv",
        subgroups="results/subgroups.csv",
        diagnostics="results/diagnostics.csv",
        audit="results/data/label_audit.csv",
        # the card names the exports of the predictors it describes: made before it
        exports=[f"{export_folder(p, m)}/card.json" for p, m in INFERENCE_KEYS],
    output:
        report(
            "results/model_card.md",
            caption="../report/model_card.rst",
            category="Model card",
        ),
    log:
        "results/logs/model_card.log",
    params:
        facts={
            "predictors": INFERENCE_PREDICTORS,
            "methods": INFERENCE_METHODS,
            "members": ENSEMBLE_MEMBERS,
            "architectures": ARCHITECTURES,
            "seeds": SEEDS,
            "diseases": list(DISEASE_BY_SLUG.values()),
            "policies": config["uncertainty"],
            "synthetic": SYNTHETIC,
            "dataset": f"{TRAIN_CSV} (train and val), {TEST_CSV} (test)",
            "image_size": config["image_size"],
            "pretrained": config["pretrained"],
            "warmup": config["warmup"],
            "finetune": config["finetune"],
            "combine": config["ensemble"]["combine"],
        },
    script:
        "../scripts/write_model_card.py"


# Grad-CAM of each disease model over the showcase grid's first images.
rule plot_saliency:
    input:
        unpack(saliency_inputs),
    output:
        png=report(
            "results/figures/saliency_{arch}.png",
            caption="../report/saliency.rst",
            category="Results",
            subcategory="Saliency",
        ),
        svg="results/figures/saliency_{arch}.svg",
    log:
        "results/logs/plot_saliency/{arch}.log",
    threads: 1
    params:
        code=PLOTS_CODE,
        diseases=list(DISEASE_BY_SLUG.values()),
        n_images=config["figures"]["saliency_images"],
        showcase_images=config["figures"]["showcase_images"],
        image_size=config["image_size"],
        method=config["figures"]["showcase_method"],
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_saliency.py"
