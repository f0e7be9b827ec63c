"""Rule finetune: stage 2, one disease's binary model from the warm-up, with DAM or CE."""

import pandas as pd

from deepauc.data import AugmentSettings, CachedSplit
from deepauc.logs import logged_to
from deepauc.train import FinetuneSettings, Runtime, run_finetune

params = snakemake.params
with logged_to(snakemake.log[0]):
    run_finetune(
        warmup_checkpoint=snakemake.input.warmup,
        disease=params.disease,
        method=snakemake.wildcards.method,
        train=CachedSplit(pd.read_csv(snakemake.input.train), snakemake.input.train_cache),
        val=CachedSplit(pd.read_csv(snakemake.input.val), snakemake.input.val_cache),
        settings=FinetuneSettings.from_config(params.finetune),
        augment=AugmentSettings.from_config(params.augment),
        runtime=Runtime.create(
            seed=int(snakemake.wildcards.seed), threads=snakemake.threads, **params.runtime
        ),
        checkpoint=snakemake.output.model,
        history=snakemake.output.history,
        inputs=list(snakemake.input),
    )
