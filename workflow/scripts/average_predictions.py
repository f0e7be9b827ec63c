"""Rules ensemble_architectures and ensemble_seeds: average the members' scores."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.ensemble import average_members
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    tables = [pd.read_csv(path) for path in snakemake.input]
    write_csv(average_members(tables, snakemake.params.combine), snakemake.output[0])
