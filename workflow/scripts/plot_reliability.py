"""Rule plot_reliability: the showcase predictor's reliability diagrams on test."""

import pandas as pd

from deepauc.evaluation.clinical_plots import plot_reliability
from deepauc.jobs.logs import logged_to

params = snakemake.params
with logged_to(snakemake.log[0]):
    plot_reliability(
        {
            method: pd.read_csv(path)
            for method, path in zip(params.methods, snakemake.input.tables, strict=True)
        },
        params.predictor,
        [snakemake.output.png, snakemake.output.svg],
        dpi=params.dpi,
        scores_are_logits=params.scores_are_logits,
    )
