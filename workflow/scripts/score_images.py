"""Rule score_images: an image set through the exported predictors (deepauc.deploy.inference)."""

import logging
from pathlib import Path

from deepauc.atomic import write_csv
from deepauc.config.settings import JobResources
from deepauc.deploy.inference import read_image_set, score_set, set_metrics
from deepauc.jobs.launch import job_runtime
from deepauc.jobs.logs import logged_to

config, inputs, params = snakemake.config, snakemake.input, snakemake.params
outputs = snakemake.output
log = logging.getLogger("deepauc")
resources = JobResources.from_config(config, snakemake.threads, snakemake.resources.gpu)
with logged_to(snakemake.log[0]), job_runtime(resources) as runtime:
    name = snakemake.wildcards.image_set
    image_set = read_image_set(
        dict(params.image_set),
        list(params.diseases),
        dict(config["uncertainty"]),
        where=f"inference.image_sets.{name}",
        views=list(config["views"]),
    )
    # each predictor's export folder: where its card (an input) lies
    bundles = {
        tuple(key): Path(card).parent
        for key, card in zip(params.predictor_keys, inputs.cards, strict=True)
    }
    scores, skipped, cards = score_set(
        image_set, bundles, config["inference"]["batch_size"], runtime.device
    )
    for row in skipped.itertuples():
        log.warning("%s: not scored (%s)", row.image, row.reason)
    metrics = set_metrics(scores, cards, params.resamples, params.seed)
    log.info(
        "%s: %d image(s) scored, %d not (results/inference/%s.skipped.csv); labels for %s",
        name,
        scores["image"].nunique() if len(scores) else 0,
        len(skipped),
        name,
        ", ".join(image_set.labelled) or "no disease",
    )
    write_csv(skipped, outputs.skipped)
    write_csv(metrics, outputs.metrics)
    write_csv(scores, outputs.scores)
