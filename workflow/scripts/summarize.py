"""Rule summarize: results/summary.csv and results/comparison.csv."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.caution import summary_cautions, trained_marks
from deepauc.evaluation.diagnostics import MIN_BACKBONE_DRIFT, warmup_best_steps
from deepauc.evaluation.summary import comparison_table, per_seed_tables, summarize
from deepauc.jobs.logs import logged_to

inputs, params = snakemake.input, snakemake.params
with logged_to(snakemake.log[0]):
    tables = {
        tuple(key): pd.read_csv(path)
        for key, path in zip(params.table_keys, inputs.tables, strict=True)
    }
    # Several seeds: each seed's tables, for the bootstrap that resamples seeds (empty for one).
    seed_tables = per_seed_tables(
        {
            tuple(key): pd.read_csv(path)
            for key, path in zip(params.seed_keys, inputs.seed_tables, strict=True)
        },
        params.combine,
    )
    runs = pd.read_csv(inputs.diagnostics)
    members = dict(params.members)
    summary = summarize(tables, params.resamples, params.seed)
    summary["trained"] = trained_marks(summary, runs, members)
    summary["caution"] = summary_cautions(
        summary,
        pd.read_csv(inputs.audit),
        warmup_best_steps(params.warmup_keys, inputs.warmups),
        members,
        runs,
        MIN_BACKBONE_DRIFT,
    )
    write_csv(summary, snakemake.output.summary)
    trained = summary.set_index(["architecture", "method", "disease"])["trained"].to_dict()
    write_csv(
        comparison_table(
            tables, params.control, params.resamples, params.seed, seed_tables, trained
        ),
        snakemake.output.comparison,
    )
