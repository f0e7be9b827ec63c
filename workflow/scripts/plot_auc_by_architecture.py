"""Rule plot_auc_by_architecture: the write-up's per-disease AUC figure, CE vs DAM."""

import pandas as pd

from deepauc.jobs.logs import logged_to
from deepauc.plots import plot_auc_by_architecture

with logged_to(snakemake.log[0]):
    plot_auc_by_architecture(
        pd.read_csv(snakemake.input.summary),
        [snakemake.output.png, snakemake.output.svg],
        dpi=snakemake.params.dpi,
    )
