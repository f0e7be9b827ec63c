"""Rule plot_training_curves: warm-up and fine-tune curves of one architecture."""

import pandas as pd

from deepauc.evaluation.plots import plot_training_curves
from deepauc.jobs.logs import logged_to

params = snakemake.params
with logged_to(snakemake.log[0]):
    plot_training_curves(
        warmup={
            seed: pd.read_csv(path)
            for seed, path in zip(params.seeds, snakemake.input.warmup, strict=True)
        },
        finetune={
            tuple(key): pd.read_csv(path)
            for key, path in zip(params.finetune_keys, snakemake.input.finetune, strict=True)
        },
        architecture=snakemake.wildcards.arch,
        paths=[snakemake.output.png, snakemake.output.svg],
        dpi=params.dpi,
    )
