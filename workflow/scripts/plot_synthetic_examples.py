"""Rule plot_synthetic_examples: a grid of training images by label."""

import pandas as pd

from deepauc.data.examples import plot_label_examples
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    table = pd.read_csv(snakemake.input[0])
    plot_label_examples(table, list(snakemake.params.diseases), snakemake.output[0])
