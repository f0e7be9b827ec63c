"""Scoring the val and test splits: each model once per split, into long prediction tables.

A prediction table has one row per image and disease: ``image, patient, disease, y_true, score,
probability``. ``score`` is the model's fp32 logit (log-odds): it ranks images exactly as the
probability does, without the ties a sigmoid makes of confident scores. ``probability`` is the
score calibrated on val (``deepauc.evaluation.calibration``; the predict rule adds it). Rows
whose label is ignored for that disease are left out. The val table serves what must be chosen
before test is read: calibration, operating thresholds, ensemble weights.
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
    return predict_splits(checkpoint, [split], runtime, batch_size)[0]


def predict_splits(
    checkpoint: str | os.PathLike, splits: list[CachedSplit], runtime: Runtime, batch_size: int = 64
) -> list[pd.DataFrame]:
    """``predict_table`` of each of ``splits``, the model loaded once."""
    model, meta = load_model(checkpoint, runtime.device)
    if runtime.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return [_scored(model, meta, split, runtime, batch_size) for split in splits]


def _scored(model, meta, split: CachedSplit, runtime: Runtime, batch_size: int) -> pd.DataFrame:
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
    splits: list[CachedSplit],
    runtime: Runtime,
    batch_size: int = 64,
) -> list[pd.DataFrame]:
    """Per split, the tables of several models (e.g. one per disease) stacked."""
    per_model = [predict_splits(path, splits, runtime, batch_size) for path in checkpoints]
    return [
        pd.concat([tables[k] for tables in per_model], ignore_index=True)
        for k in range(len(splits))
    ]


def write_by_disease(predictions: pd.DataFrame, paths: dict[str, str | os.PathLike]) -> None:
    """Write each disease's rows to ``paths[disease]``; every disease must have been scored."""
    missing = set(paths) - set(predictions["disease"])
    if missing:
        raise ValueError(f"no predictions for {sorted(missing)}")
    for disease, path in paths.items():
        write_csv(predictions[predictions["disease"] == disease], path)
