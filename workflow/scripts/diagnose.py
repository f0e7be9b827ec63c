"""Rule diagnose: results/diagnostics.csv, one row per fine-tune."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.diagnostics import DIAGNOSTICS_COLUMNS, diagnostics_row
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    runs = {}
    for (arch, seed, method, disease, rate), path in zip(
        snakemake.params.runs, snakemake.input, strict=True
    ):
        key = (arch, seed, method, disease)
        runs.setdefault(key, {})[rate] = pd.read_csv(path)
    rows = [
        diagnostics_row(dict(zip(DIAGNOSTICS_COLUMNS[:4], key, strict=True)), histories)
        for key, histories in runs.items()
    ]
    write_csv(pd.DataFrame(rows, columns=DIAGNOSTICS_COLUMNS), snakemake.output[0])
