"""Rule export_predictor: a trained predictor as safetensors + card.json + TorchScript, its
outputs checked against the pipeline's scoring (deepauc.deploy.bundle)."""

import logging
from pathlib import Path

import pandas as pd
import torch

from deepauc.data.images import CachedSplit
from deepauc.deploy.bundle import export_predictor
from deepauc.jobs.logs import logged_to

inputs, params, wildcards = snakemake.input, snakemake.params, snakemake.wildcards
with logged_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    card = export_predictor(
        params.plan,
        list(params.diseases),
        pd.read_csv(inputs.final_val),
        CachedSplit(pd.read_csv(inputs.test), inputs.test_cache),
        Path(snakemake.output[0]).parent,
        {
            "predictor": wildcards.predictor,
            "method": wildcards.method,
            "config_files": list(params.config_files),
            "final_val_table": inputs.final_val,
        },
    )
    logging.getLogger("deepauc").info(
        "exported %s %s: %d network(s), parity %.2g (tolerance %g)",
        wildcards.predictor,
        wildcards.method,
        len(card["networks"]),
        card["parity"]["max_abs_difference"],
        card["parity"]["tolerance"],
    )
