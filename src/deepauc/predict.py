"""Scoring the test split: each model once, into long prediction tables.

A prediction table has one row per image and disease: ``image, patient, disease, y_true, score``
(``score`` a probability). Rows whose label is ignored for that disease are left out.
"""

import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from deepauc.atomic import write_csv
from deepauc.checkpoints import load_model
from deepauc.data import XrayDataset, to_model_input
from deepauc.train import Runtime

COLUMNS = ["image", "patient", "disease", "y_true", "score"]


@torch.no_grad()
def predict_table(
    checkpoint: str | os.PathLike, table: pd.DataFrame, runtime: Runtime, batch_size: int = 64
) -> pd.DataFrame:
    """Scores of the model at ``checkpoint`` for every image of ``table``, one row per output."""
    model, meta = load_model(checkpoint, runtime.device)
    model.eval()
    outputs = meta["outputs"]
    loader = DataLoader(
        XrayDataset(table, outputs, meta["image_size"]),
        batch_size=batch_size,
        shuffle=False,
        num_workers=runtime.loader_workers,
        pin_memory=runtime.device.type == "cuda",
    )
    if runtime.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    scores = []
    for images, _ in loader:
        with runtime.autocast():
            logits = model(to_model_input(images, runtime.device))
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
    probabilities = np.concatenate(scores)
    frames = []
    for j, disease in enumerate(outputs):
        frame = pd.DataFrame(
            {
                "image": table["image"].to_numpy(),
                "patient": table["patient"].to_numpy(),
                "disease": disease,
                "y_true": table[disease].to_numpy(dtype=float, na_value=np.nan),
                "score": probabilities[:, j],
            }
        )
        frames.append(frame[frame["y_true"].notna()])
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def predict_models(
    checkpoints: list[str | os.PathLike],
    table: pd.DataFrame,
    runtime: Runtime,
    batch_size: int = 64,
) -> pd.DataFrame:
    """``predict_table`` of several models (e.g. one per disease), stacked."""
    return pd.concat(
        [predict_table(path, table, runtime, batch_size) for path in checkpoints], ignore_index=True
    )


def write_by_disease(predictions: pd.DataFrame, paths: dict[str, str | os.PathLike]) -> None:
    """Write each disease's rows to ``paths[disease]``; every disease must have been scored."""
    missing = set(paths) - set(predictions["disease"])
    if missing:
        raise ValueError(f"no predictions for {sorted(missing)}")
    for disease, path in paths.items():
        write_csv(predictions[predictions["disease"] == disease], path)
