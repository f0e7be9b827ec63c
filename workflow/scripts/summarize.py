"""Rule summarize: results/summary.csv and results/comparison.csv."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.jobs.logs import logged_to
from deepauc.summary import compare_with_control, summarize

params = snakemake.params
with logged_to(snakemake.log[0]):
    tables = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(params.table_keys, snakemake.input, strict=True)
    }
    write_csv(summarize(tables, params.resamples, params.seed), snakemake.output.summary)
    write_csv(
        compare_with_control(tables, params.control, params.resamples, params.seed),
        snakemake.output.comparison,
    )
