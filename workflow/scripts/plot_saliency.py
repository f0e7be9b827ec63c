"""Rule plot_saliency: Grad-CAM of an architecture's disease models over showcase images."""

import numpy as np
import pandas as pd
import torch

from deepauc.data.cache import load_image
from deepauc.deploy.saliency import plot_saliency, saliency_maps
from deepauc.evaluation.clinical_plots import showcase_picks
from deepauc.jobs.logs import logged_to
from deepauc.methods import style
from deepauc.models.checkpoints import load_model

inputs, params, outputs = snakemake.input, snakemake.params, snakemake.output
DISPLAY = 256  # px of the X-ray under each map
with logged_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    picks = showcase_picks(pd.read_csv(inputs.showcase), params.showcase_images)
    picks = picks[: params.n_images]
    table = pd.read_csv(inputs.table).set_index(["image", "disease"])
    pixels = np.stack([load_image(image, params.image_size) for image in picks])
    maps, titles = {}, {}
    models = {}
    for disease, path in zip(params.diseases, inputs.models, strict=True):
        if path not in models:
            models[path] = load_model(path)
        model, meta = models[path]
        maps[disease] = saliency_maps(
            model, meta["outputs"].index(disease), pixels, params.image_size
        )
        titles[disease] = []
        for image in picks:
            row = table.loc[(image, disease)] if (image, disease) in table.index else None
            if row is None:
                titles[disease].append(f"{disease}: label ignored")
            else:
                truth = "GT +" if row["y_true"] == 1 else "GT -"
                titles[disease].append(f"p = {row['probability']:.2f}, {truth}")
    arch = snakemake.wildcards.arch
    plot_saliency(
        [load_image(image, DISPLAY) for image in picks],
        maps,
        titles,
        [f"test image {i + 1}" for i in range(len(picks))],
        [outputs.png, outputs.svg],
        f"Grad-CAM of {arch}'s {style(params.method).label} disease models "
        "(towards positive; p: calibrated probability)",
        dpi=params.dpi,
    )
