"""Rule summarize: results/summary.csv, comparison.csv, calibration.csv and
ensemble_weights.csv."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.calibration import calibration_table
from deepauc.evaluation.caution import summary_cautions, trained_marks
from deepauc.evaluation.diagnostics import MIN_BACKBONE_DRIFT, warmup_best_steps
from deepauc.evaluation.ensemble import ensemble_weights_table
from deepauc.evaluation.summary import (
    comparison_table,
    per_seed_tables,
    read_tables,
    study_rows,
    summarize,
)
from deepauc.jobs.logs import logged_to

inputs, params, outputs = snakemake.input, snakemake.params, snakemake.output
with logged_to(snakemake.log[0]):
    tables = read_tables(params.table_keys, inputs.tables)
    val_tables = read_tables(params.table_keys, inputs.val_tables)
    # Several seeds: each seed's tables, for the bootstrap that resamples seeds (empty for one).
    seed_tables = per_seed_tables(read_tables(params.seed_keys, inputs.seed_tables), params.combine)
    runs = pd.read_csv(inputs.diagnostics)
    members = dict(params.members)
    summary = summarize(tables, params.resamples, params.seed, val_tables)
    summary["trained"] = trained_marks(summary, runs, members)
    summary["caution"] = summary_cautions(
        summary,
        pd.read_csv(inputs.audit),
        warmup_best_steps(params.warmup_keys, inputs.warmups),
        members,
        runs,
        MIN_BACKBONE_DRIFT,
    )
    trained = summary.set_index(["architecture", "method", "disease"])["trained"].to_dict()
    if params.study_score != "none":
        splits = {
            split: pd.read_csv(path)
            for split, path in zip(["val", "test"], inputs.splits, strict=True)
        }
        studies = study_rows(
            summary,
            tables,
            val_tables,
            splits,
            params.study_score,
            params.resamples,
            params.seed,
        )
        summary = pd.concat([summary, studies], ignore_index=True)
    write_csv(summary, outputs.summary)
    write_csv(
        comparison_table(
            tables,
            params.control,
            params.resamples,
            params.seed,
            seed_tables,
            trained,
            val_tables,
        ),
        outputs.comparison,
    )
    # A rank ensemble's scores are percentile ranks, not logits: no "before" to calibrate.
    write_csv(
        calibration_table(tables, val_tables, frozenset(map(tuple, params.rank_scored))),
        outputs.calibration,
    )
    write_csv(
        ensemble_weights_table(read_tables(params.weight_keys, inputs.weights)),
        outputs.ensemble_weights,
    )
