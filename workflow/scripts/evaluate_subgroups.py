"""Rule evaluate_subgroups: results/subgroups.csv (deepauc.evaluation.subgroups)."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.subgroups import subgroup_table
from deepauc.evaluation.summary import read_tables
from deepauc.jobs.logs import logged_to

inputs, params = snakemake.input, snakemake.params
with logged_to(snakemake.log[0]):
    write_csv(
        subgroup_table(
            read_tables(params.table_keys, inputs.tables),
            read_tables(params.table_keys, inputs.val_tables),
            pd.read_csv(inputs.groups),
            params.resamples,
            params.seed,
        ),
        snakemake.output[0],
    )
