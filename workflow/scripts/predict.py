"""Rule predict: score the val and test splits with the warm-up or with a method's disease
models; probabilities calibrated on val."""

import pandas as pd

from deepauc.config.settings import JobResources
from deepauc.data.images import CachedSplit
from deepauc.evaluation.calibration import calibrate
from deepauc.jobs.launch import job_runtime
from deepauc.jobs.logs import logged_to
from deepauc.training.predict import predict_models, write_by_disease

config, inputs, outputs = snakemake.config, snakemake.input, snakemake.output
resources = JobResources.from_config(config, snakemake.threads, snakemake.resources.gpu)
with logged_to(snakemake.log[0]), job_runtime(resources) as runtime:
    val, test = predict_models(
        list(inputs.models),
        [
            CachedSplit(pd.read_csv(inputs.val), inputs.val_cache),
            CachedSplit(pd.read_csv(inputs.test), inputs.test_cache),
        ],
        runtime,
        # Runtime only: scores do not depend on the batch they are computed in.
        batch_size=config["evaluation"]["batch_size"],
    )
    val, test = calibrate(val, test)
    diseases = snakemake.params.diseases
    write_by_disease(val, dict(zip(diseases, outputs.val, strict=True)))
    write_by_disease(test, dict(zip(diseases, outputs.test, strict=True)))
