"""Rule finetune: stage 2, one disease's binary model from the warm-up, with one method."""

from deepauc.jobs.parallelism import step_back

step_back()  # first: the warm-ups this fan-out started from go first on a shared CPU

from deepauc.config.rates import (  # noqa: E402
    at_rate,
)
from deepauc.config.settings import (  # noqa: E402
    AugmentSettings,
    FinetuneSettings,
    FinetuneSpec,
    JobResources,
    SplitFiles,
)
from deepauc.evaluation.diagnostics import chosen_rate  # noqa: E402
from deepauc.jobs.launch import run_training  # noqa: E402
from deepauc.jobs.logs import logged_to  # noqa: E402
from deepauc.training.resume import journal_path  # noqa: E402

params, inputs, output = snakemake.params, snakemake.input, snakemake.output
with logged_to(snakemake.log[0], journal=journal_path(output.model)):
    method, finetune = snakemake.wildcards.method, params.finetune
    if inputs.chosen_rates:  # rate_search: first_seed, a later seed: the first seed's choice
        finetune = at_rate(finetune, method, chosen_rate(inputs.chosen_rates))
    spec = FinetuneSpec(
        warmup_checkpoint=inputs.warmup,
        seed=int(snakemake.wildcards.seed),
        disease=params.disease,
        train=SplitFiles(inputs.train, inputs.train_cache),
        val=SplitFiles(inputs.val, inputs.val_cache),
        settings=FinetuneSettings.from_config(finetune, method),
        augment=AugmentSettings.from_config(params.augment),
        checkpoint=output.model,
        history=output.history,
        inputs=tuple(inputs),
    )
    resources = snakemake.resources
    run_training(
        spec,
        JobResources.from_config(
            snakemake.config, snakemake.threads, resources.gpu, resources.ddp_processes
        ),
    )
