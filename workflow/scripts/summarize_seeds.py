"""Rule summarize_seeds: results/seeds.csv, the summary of each seed on its own and its paired
differences against CE and the warm-up (columns: deepauc.evaluation.summary's docstring)."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.summary import seeds_table
from deepauc.jobs.logs import logged_to

params = snakemake.params
with logged_to(snakemake.log[0]):
    tables = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(params.table_keys, snakemake.input, strict=True)
    }
    write_csv(seeds_table(tables, params.resamples, params.seed), snakemake.output[0])
