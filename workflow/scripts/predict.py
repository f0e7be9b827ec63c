"""Rule predict: score the test split once with the warm-up or with a method's disease models."""

import pandas as pd

from deepauc.data import CachedSplit
from deepauc.launch import job_runtime
from deepauc.logs import logged_to
from deepauc.predict import predict_models, write_by_disease

params = snakemake.params
with (
    logged_to(snakemake.log[0]),
    job_runtime({"seed": 0, "threads": snakemake.threads} | params.runtime) as runtime,
):
    predictions = predict_models(
        list(snakemake.input.models),
        CachedSplit(pd.read_csv(snakemake.input.test), snakemake.input.test_cache),
        runtime,
        batch_size=params.batch_size,
    )
    write_by_disease(predictions, dict(zip(params.diseases, snakemake.output, strict=True)))
