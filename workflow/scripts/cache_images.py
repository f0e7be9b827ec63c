"""Rule cache_images: decode one split's images once, at the training size."""

import pandas as pd

from deepauc.data.cache import build_cache
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    build_cache(
        pd.read_csv(snakemake.input[0])["image"].tolist(),
        int(snakemake.wildcards.size),
        snakemake.output[0],
        workers=snakemake.threads,
        label=snakemake.wildcards.split,
    )
