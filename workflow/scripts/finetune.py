"""Rule finetune: stage 2, one disease's binary model from the warm-up, with DAM or CE."""

from deepauc.launch import run_training
from deepauc.logs import logged_to

params, inputs = snakemake.params, snakemake.input
with logged_to(snakemake.log[0]):
    run_training(
        "finetune",
        {
            "warmup_checkpoint": inputs.warmup,
            "disease": params.disease,
            "method": snakemake.wildcards.method,
            "train": {"table": inputs.train, "cache": inputs.train_cache},
            "val": {"table": inputs.val, "cache": inputs.val_cache},
            "settings": dict(params.finetune),
            "augment": dict(params.augment),
            "checkpoint": snakemake.output.model,
            "history": snakemake.output.history,
            "inputs": list(inputs),
        },
        runtime={"seed": int(snakemake.wildcards.seed), "threads": snakemake.threads}
        | params.runtime,
    )
