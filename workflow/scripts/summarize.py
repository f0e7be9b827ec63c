"""Rule summarize: results/summary.csv and results/comparison.csv."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.caution import summary_cautions
from deepauc.diagnostics import warmup_best_steps
from deepauc.jobs.logs import logged_to
from deepauc.summary import compare_with_control, summarize

inputs, params = snakemake.input, snakemake.params
with logged_to(snakemake.log[0]):
    tables = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(params.table_keys, inputs.tables, strict=True)
    }
    warmups = warmup_best_steps(params.warmup_keys, inputs.warmups)
    summary = summarize(tables, params.resamples, params.seed)
    summary["caution"] = summary_cautions(
        summary, pd.read_csv(inputs.audit), warmups, dict(params.members)
    )
    write_csv(summary, snakemake.output.summary)
    write_csv(
        compare_with_control(tables, params.control, params.resamples, params.seed),
        snakemake.output.comparison,
    )
