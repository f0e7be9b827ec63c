"""Rule summarize_seeds: results/seeds.csv, the summary of each seed on its own."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.jobs.logs import logged_to
from deepauc.summary import summarize_by_seed

params = snakemake.params
with logged_to(snakemake.log[0]):
    tables = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(params.table_keys, snakemake.input, strict=True)
    }
    write_csv(summarize_by_seed(tables, params.resamples, params.seed), snakemake.output[0])
