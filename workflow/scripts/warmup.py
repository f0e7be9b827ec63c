"""Rule warmup: stage 1, multi-label BCE over all diseases for one architecture and seed."""

import pandas as pd

from deepauc.data import AugmentSettings, CachedSplit
from deepauc.logs import logged_to
from deepauc.train import Runtime, WarmupSettings, run_warmup

params = snakemake.params
with logged_to(snakemake.log[0]):
    run_warmup(
        arch=snakemake.wildcards.arch,
        train=CachedSplit(pd.read_csv(snakemake.input.train), snakemake.input.train_cache),
        val=CachedSplit(pd.read_csv(snakemake.input.val), snakemake.input.val_cache),
        diseases=list(params.diseases),
        image_size=params.image_size,
        settings=WarmupSettings.from_config(params.warmup),
        augment=AugmentSettings.from_config(params.augment),
        runtime=Runtime.create(
            seed=int(snakemake.wildcards.seed), threads=snakemake.threads, **params.runtime
        ),
        checkpoint=snakemake.output.model,
        history=snakemake.output.history,
        pretrained=params.pretrained,
        inputs=list(snakemake.input),
    )
