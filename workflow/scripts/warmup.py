"""Rule warmup: stage 1, multi-label BCE over all diseases for one architecture and seed."""

from deepauc.launch import run_training
from deepauc.logs import logged_to

params, inputs = snakemake.params, snakemake.input
with logged_to(snakemake.log[0]):
    run_training(
        "warmup",
        {
            "arch": snakemake.wildcards.arch,
            "train": {"table": inputs.train, "cache": inputs.train_cache},
            "val": {"table": inputs.val, "cache": inputs.val_cache},
            "diseases": list(params.diseases),
            "image_size": params.image_size,
            "settings": dict(params.warmup),
            "augment": dict(params.augment),
            "checkpoint": snakemake.output.model,
            "history": snakemake.output.history,
            "pretrained": params.pretrained,
            "inputs": list(inputs),
        },
        runtime={"seed": int(snakemake.wildcards.seed), "threads": snakemake.threads}
        | params.runtime,
    )
