"""A training job: what differs between stage 1 and each fine-tune method, handed to ``fit``."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from libauc.sampler import DualSampler
from torch import nn
from torch.utils.data import DataLoader

from deepauc.config.settings import AugmentSettings


@dataclass
class Job:
    """What differs between stages; ``fit`` does the rest."""

    name: str
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader
    val_loader: DataLoader
    augment: AugmentSettings
    augment_generator: torch.Generator
    epochs: int
    eval_every_steps: int
    outputs: list[str]
    meta: dict
    settings: dict  # what, besides meta and inputs, makes a resume file reusable
    after_epoch: Callable[[int], None] = lambda epoch: None
    extra_state: nn.Module | None = None  # e.g. AUCMLoss's a, b, alpha
    sampler: DualSampler | None = None
    train_model: nn.Module | None = None  # ``model``, compiled when asked; shares its weights
    # (val scores, targets) of one output -> diagnostic columns of a history row (fine-tunes)
    diagnose: Callable[[np.ndarray, np.ndarray], dict] | None = None

    def __post_init__(self):
        if self.train_model is None:
            self.train_model = self.model
