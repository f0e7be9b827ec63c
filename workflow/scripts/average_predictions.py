"""Rules ensemble_architectures, select_ensemble and ensemble_seeds: combine the members'
scores (the plain mean, or weights selected on val), then calibrate the result on its val."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.evaluation.calibration import calibrate
from deepauc.evaluation.ensemble import average_members, select_members, weight_rows
from deepauc.jobs.logs import logged_to

inputs, outputs, params = snakemake.input, snakemake.output, snakemake.params
with logged_to(snakemake.log[0]):
    val = [pd.read_csv(path) for path in inputs.val]
    test = [pd.read_csv(path) for path in inputs.test]
    weights = None
    if outputs.get("weights"):
        weights = select_members(val, params.combine)
        write_csv(weight_rows(weights, list(params.members)), outputs.weights)
    val, test = calibrate(
        average_members(val, params.combine, weights),
        average_members(test, params.combine, weights),
    )
    write_csv(val, outputs.val)
    write_csv(test, outputs.test)
