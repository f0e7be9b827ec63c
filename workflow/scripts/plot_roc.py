"""Rule plot_roc: ROC curves of one disease, low false-positive region enlarged."""

import pandas as pd

from deepauc.evaluation.plots import plot_roc
from deepauc.jobs.logs import logged_to

params = snakemake.params
with logged_to(snakemake.log[0]):
    tables = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(params.table_keys, snakemake.input.tables, strict=True)
    }
    plot_roc(tables, params.disease, [snakemake.output.png, snakemake.output.svg], dpi=params.dpi)
