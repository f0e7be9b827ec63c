"""Rule diagnose: results/diagnostics.csv, one row per fine-tune."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.diagnostics import diagnostics_table
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    runs = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(snakemake.params.runs, snakemake.input, strict=True)
    }
    write_csv(diagnostics_table(runs), snakemake.output[0])
