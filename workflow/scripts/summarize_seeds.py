"""Rule summarize_seeds: results/seeds.csv, the summary of each seed on its own."""

import pandas as pd

from deepauc.atomic import write_csv
from deepauc.logs import logged_to
from deepauc.summary import summarize

params = snakemake.params
with logged_to(snakemake.log[0]):
    frames = []
    for (predictor, method, seed), path in zip(params.table_keys, snakemake.input, strict=True):
        scored = summarize({(predictor, method): pd.read_csv(path)}, params.resamples, params.seed)
        frames.append(scored.assign(seed=seed))
    write_csv(pd.concat(frames, ignore_index=True), snakemake.output[0])
