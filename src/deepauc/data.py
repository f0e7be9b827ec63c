"""Images and targets for training: split tables in, batches of tensors out.

A dataset item is a one-channel float image in [0, 1] and its target vector (NaN where the label is
ignored). ``to_model_input`` turns a batch into what a network expects: on the device, three
channels, ImageNet-normalised, channels_last where it pays.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentSettings:
    """Light affine augmentation, as in LibAUC's CheXpert recipe. No flip by default: the heart
    sits on the left, so a mirrored chest is not a plausible radiograph."""

    rotation: float = 15.0
    translate: float = 0.05
    scale: tuple[float, float] = (0.95, 1.05)
    hflip: bool = False

    @classmethod
    def from_config(cls, section: dict) -> "AugmentSettings":
        """From the config's ``augment`` section."""
        return cls(**{**section, "scale": tuple(section["scale"])})

    def transform(self) -> v2.Transform:
        steps = [
            v2.RandomAffine(
                degrees=self.rotation,
                translate=(self.translate, self.translate),
                scale=tuple(self.scale),
            )
        ]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)


class XrayDataset(Dataset):
    """Images of a split table, resized to ``image_size``, with targets for ``diseases``."""

    def __init__(
        self,
        table: pd.DataFrame,
        diseases: list[str],
        image_size: int,
        augment: AugmentSettings | None = None,
    ):
        self.paths = table["image"].tolist()
        self.targets = table[diseases].to_numpy(dtype=np.float32, na_value=np.nan)
        self.image_size = image_size
        self.transform = augment.transform() if augment else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[index]) as image:
            gray = image.convert("L").resize((self.image_size, self.image_size), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(gray, dtype=np.uint8).copy()).unsqueeze(0)
        if self.transform is not None:
            pixels = self.transform(pixels)
        return pixels.float().div_(255.0), torch.from_numpy(self.targets[index])


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch of one-channel images to ``device`` as normalised three-channel input."""
    images = images.to(device, non_blocking=True).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    batch = (images - mean) / std
    if device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch
