"""Rule plot_saliency: Grad-CAM of an architecture's disease models over showcase images."""

import pandas as pd
import torch

from deepauc.deploy.saliency import saliency_figure
from deepauc.evaluation.clinical_plots import showcase_picks
from deepauc.jobs.logs import logged_to
from deepauc.methods import style

inputs, params, outputs = snakemake.input, snakemake.params, snakemake.output
with logged_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    picks = showcase_picks(pd.read_csv(inputs.showcase), params.showcase_images)
    saliency_figure(
        picks[: params.n_images],
        pd.read_csv(inputs.table),
        dict(zip(params.diseases, inputs.models, strict=True)),
        params.image_size,
        [outputs.png, outputs.svg],
        f"Grad-CAM of {snakemake.wildcards.arch}'s {style(params.method).label} disease models "
        "(towards positive; p: calibrated probability)",
        dpi=params.dpi,
    )
