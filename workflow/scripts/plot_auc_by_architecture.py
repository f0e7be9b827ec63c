"""Rule plot_auc_by_architecture: the per-disease AUC figure, with its paired differences vs CE
(equal compute) and vs the warm-up (the write-up's comparison)."""

import pandas as pd

from deepauc.evaluation.plots import plot_auc_by_architecture
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    plot_auc_by_architecture(
        pd.read_csv(snakemake.input.summary),
        [snakemake.output.png, snakemake.output.svg],
        dpi=snakemake.params.dpi,
        comparison=pd.read_csv(snakemake.input.comparison),
    )
