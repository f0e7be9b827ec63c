"""Rule summarize_seeds: results/seeds.csv, the summary of each seed on its own and its paired
differences against CE and the warm-up (columns: deepauc.evaluation.summary's docstring)."""

from deepauc.atomic import write_csv
from deepauc.evaluation.summary import read_tables, seeds_table
from deepauc.jobs.logs import logged_to

inputs, params = snakemake.input, snakemake.params
with logged_to(snakemake.log[0]):
    tables = read_tables(params.table_keys, inputs.tables)
    val_tables = read_tables(params.table_keys, inputs.val_tables)
    write_csv(seeds_table(tables, params.resamples, params.seed, val_tables), snakemake.output[0])
