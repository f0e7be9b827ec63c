"""Scores of a model for every image of a loader: used by validation and by the test scoring."""

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from deepauc.data.images import to_model_input
from deepauc.models.build import HeadInFp32
from deepauc.training.runtime import Runtime


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, runtime: Runtime) -> np.ndarray:
    """fp32 logits of ``model`` for every image of ``loader``, in order: (images, outputs).

    Logits, not probabilities: a monotone map of them, so every AUC is the same, but a sigmoid
    rounds confident scores to one value (in fp32 from a logit of about 17) and ties them.
    """
    model.eval()
    scoring = HeadInFp32(model)
    scores = []
    for images, *_ in loader:
        count = len(images)
        if runtime.device.type == "cuda" and count < loader.batch_size:
            # A batch of a new size makes cuDNN's benchmark mode time every layer again
            # (tens of seconds for a DenseNet): pad the last one with copies instead.
            padding = images[-1:].expand(loader.batch_size - count, *images.shape[1:])
            images = torch.cat([images, padding])
        with runtime.autocast():
            logits = scoring(to_model_input(images, runtime.device))
        scores.append(logits[:count])
    return torch.cat(scores).cpu().numpy()  # one wait for the GPU, not one per batch
