"""Rule predict: score the test split once with the warm-up or with a method's disease models."""

import pandas as pd

from deepauc.config.settings import JobResources
from deepauc.data.images import CachedSplit
from deepauc.jobs.launch import job_runtime
from deepauc.jobs.logs import logged_to
from deepauc.training.predict import predict_models, write_by_disease

config = snakemake.config
resources = JobResources.from_config(config, snakemake.threads, snakemake.resources.gpu)
with logged_to(snakemake.log[0]), job_runtime(resources) as runtime:
    predictions = predict_models(
        list(snakemake.input.models),
        CachedSplit(pd.read_csv(snakemake.input.test), snakemake.input.test_cache),
        runtime,
        # Runtime only: scores do not depend on the batch they are computed in.
        batch_size=config["evaluation"]["batch_size"],
    )
    diseases = snakemake.params.diseases
    write_by_disease(predictions, dict(zip(diseases, snakemake.output, strict=True)))
