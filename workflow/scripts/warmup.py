"""Rule warmup: stage 1, multi-label BCE over all diseases for one architecture and seed."""

from deepauc.config.settings import (
    AugmentSettings,
    JobResources,
    SplitFiles,
    WarmupSettings,
    WarmupSpec,
)
from deepauc.jobs.launch import run_training
from deepauc.jobs.logs import logged_to
from deepauc.training.resume import journal_path

params, inputs, output = snakemake.params, snakemake.input, snakemake.output
with logged_to(snakemake.log[0], journal=journal_path(output.model)):
    spec = WarmupSpec(
        arch=snakemake.wildcards.arch,
        seed=int(snakemake.wildcards.seed),
        train=SplitFiles(inputs.train, inputs.train_cache),
        val=SplitFiles(inputs.val, inputs.val_cache),
        diseases=tuple(params.diseases),
        image_size=params.image_size,
        settings=WarmupSettings.from_config(params.warmup),
        augment=AugmentSettings.from_config(params.augment),
        checkpoint=output.model,
        history=output.history,
        pretrained=params.pretrained,
        inputs=tuple(inputs),
    )
    resources = snakemake.resources
    run_training(
        spec,
        JobResources.from_config(
            snakemake.config, snakemake.threads, resources.gpu, resources.ddp_processes
        ),
    )
