"""Rule plot_subgroups: the showcase predictor's test AUC per subgroup."""

import pandas as pd

from deepauc.evaluation.clinical_plots import plot_subgroups
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    plot_subgroups(
        pd.read_csv(snakemake.input[0]),
        snakemake.params.predictor,
        [snakemake.output.png, snakemake.output.svg],
        dpi=snakemake.params.dpi,
    )
