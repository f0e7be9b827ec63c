"""Rule plot_showcase: test images with top predictions and ground truth."""

import pandas as pd

from deepauc.evaluation.clinical_plots import plot_showcase
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    plot_showcase(
        pd.read_csv(snakemake.input.table),
        [snakemake.output.png, snakemake.output.svg],
        n_images=snakemake.params.n_images,
        dpi=snakemake.params.dpi,
        model=snakemake.params.model,
    )
