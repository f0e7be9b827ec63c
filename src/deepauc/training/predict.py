"""Scoring the test split: each model once, into long prediction tables.

A prediction table has one row per image and disease: ``image, patient, disease, y_true, score``.
``score`` is the model's fp32 logit (log-odds): it ranks images exactly as the probability does,
without the ties a sigmoid makes of confident scores. Rows whose label is ignored for that
disease are left out.
"""

import os

import numpy as np
import pandas as pd
import torch

from deepauc.atomic import write_csv
from deepauc.data.images import CachedSplit
from deepauc.models.checkpoints import load_model
from deepauc.training.loaders import eval_loader, place_images
from deepauc.training.runtime import Runtime
from deepauc.training.scoring import predict_logits

COLUMNS = ["image", "patient", "disease", "y_true", "score"]


def predict_table(
    checkpoint: str | os.PathLike, split: CachedSplit, runtime: Runtime, batch_size: int = 64
) -> pd.DataFrame:
    """Scores of the model at ``checkpoint`` for every image of ``split``, one row per output."""
    model, meta = load_model(checkpoint, runtime.device)
    if runtime.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    outputs, table = meta["outputs"], split.table
    images = place_images(split.images(outputs, meta["image_size"]), runtime)
    loader = eval_loader(images, batch_size, runtime)
    logits = predict_logits(model, loader, runtime)
    frames = []
    for j, disease in enumerate(outputs):
        frame = pd.DataFrame(
            {
                "image": table["image"].to_numpy(),
                "patient": table["patient"].to_numpy(),
                "disease": disease,
                "y_true": table[disease].to_numpy(dtype=float, na_value=np.nan),
                "score": logits[:, j],
            }
        )
        frames.append(frame[frame["y_true"].notna()])
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def predict_models(
    checkpoints: list[str | os.PathLike],
    split: CachedSplit,
    runtime: Runtime,
    batch_size: int = 64,
) -> pd.DataFrame:
    """``predict_table`` of several models (e.g. one per disease), stacked."""
    return pd.concat(
        [predict_table(path, split, runtime, batch_size) for path in checkpoints], ignore_index=True
    )


def write_by_disease(predictions: pd.DataFrame, paths: dict[str, str | os.PathLike]) -> None:
    """Write each disease's rows to ``paths[disease]``; every disease must have been scored."""
    missing = set(paths) - set(predictions["disease"])
    if missing:
        raise ValueError(f"no predictions for {sorted(missing)}")
    for disease, path in paths.items():
        write_csv(predictions[predictions["disease"] == disease], path)
