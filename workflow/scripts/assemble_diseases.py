"""Rule assemble_diseases: one architecture's disease models read as one predictor (val and
test tables; each disease model's probabilities stay as its calibration made them)."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.ensemble import assemble_diseases
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    for split in ("val", "test"):
        tables = [pd.read_csv(path) for path in snakemake.input[split]]
        write_csv(assemble_diseases(tables), snakemake.output[split])
