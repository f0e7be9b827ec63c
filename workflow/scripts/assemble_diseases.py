"""Rule assemble_diseases: one architecture's disease models read as one predictor."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.ensemble import assemble_diseases
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    tables = [pd.read_csv(path) for path in snakemake.input]
    write_csv(assemble_diseases(tables), snakemake.output[0])
