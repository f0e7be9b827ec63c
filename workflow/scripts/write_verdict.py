"""Rule verdict: results/verdict.md from the run's own tables (deepauc.evaluation.verdict)."""

import pandas as pd

from deepauc.atomic import atomic_path
from deepauc.evaluation.verdict import verdict
from deepauc.jobs.logs import logged_to

inputs = snakemake.input
with logged_to(snakemake.log[0]):
    text = verdict(
        pd.read_csv(inputs.comparison, dtype={"p_reported": str}),  # 0.90 stays 0.90
        pd.read_csv(inputs.diagnostics),
        pd.read_csv(inputs.audit),
        snakemake.params.facts,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(text)
