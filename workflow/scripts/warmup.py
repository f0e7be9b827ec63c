"""Rule warmup: stage 1, multi-label BCE over all diseases for one architecture and seed."""

import pandas as pd

from deepauc.logs import logged_to
from deepauc.settings import augment_settings, warmup_settings
from deepauc.train import Runtime, run_warmup

params = snakemake.params
with logged_to(snakemake.log[0]):
    run_warmup(
        arch=snakemake.wildcards.arch,
        train=pd.read_csv(snakemake.input.train),
        val=pd.read_csv(snakemake.input.val),
        diseases=list(params.diseases),
        image_size=params.image_size,
        settings=warmup_settings(params.warmup),
        augment=augment_settings(params.augment),
        runtime=Runtime.create(params.device, int(snakemake.wildcards.seed), snakemake.threads),
        checkpoint=snakemake.output.model,
        history=snakemake.output.history,
        pretrained=params.pretrained,
        inputs=list(snakemake.input),
    )
