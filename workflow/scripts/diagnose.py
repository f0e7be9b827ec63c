"""Rule diagnose: results/diagnostics.csv, one row per fine-tune."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.config.rates import rate_of
from deepauc.evaluation.diagnostics import diagnostics_table, warmup_best_steps
from deepauc.jobs.logs import logged_to

inputs, params = snakemake.input, snakemake.params
with logged_to(snakemake.log[0]):
    runs = {}
    for (*key, label), path in zip(params.runs, inputs.histories, strict=True):
        history = pd.read_csv(path)
        runs[(*key, rate_of(label, history))] = history
    warmups = warmup_best_steps(params.warmup_keys, inputs.warmups)
    table = diagnostics_table(runs, pd.read_csv(inputs.audit), warmups)
    write_csv(table, snakemake.output[0])
