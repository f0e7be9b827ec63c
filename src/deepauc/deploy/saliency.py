"""Grad-CAM saliency of the disease models (the grad-cam package), for convolutional and
transformer families alike.

Grad-CAM weighs a layer's feature maps by the gradient of one logit. Which layer, and how its
output becomes a (B, C, H, W) map, depends on the family; both come from timm's own
description of the network (``feature_info``), not from a list of names:

- the layer is the deepest feature stage whose map still has about 7 cells across (at 224 px
  the last stage, 7 x 7; at the quick start's 40 px an earlier one, as a 1 x 1 map points
  nowhere), else the deepest of the finest stages (a ViT's blocks all have one size);
- a map in channels-last layout (Swin's stages: B, H, W, C) is permuted, and a token sequence
  (ViT's blocks: B, prefix + H*W, C) loses its class tokens and is folded into its grid.
"""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget  # noqa: E402
from torch import nn  # noqa: E402

from deepauc.data.cache import load_image  # noqa: E402
from deepauc.data.images import to_model_input  # noqa: E402
from deepauc.evaluation.plots import save_figure  # noqa: E402
from deepauc.models.checkpoints import load_model  # noqa: E402

CELLS_ACROSS = 7
DISPLAY = 256  # px of the X-ray under each map


class OneLogit(nn.Module):
    """``model``'s logit ``output`` alone, as a (B, 1) tensor (a warm-up model scores all
    diseases; Grad-CAM's binary target wants one)."""

    def __init__(self, model: nn.Module, output: int = 0):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[:, self.output : self.output + 1]


def target_layer(model: nn.Module, image_size: int) -> tuple[str, dict]:
    """The name of the feature stage Grad-CAM reads (see the module docstring) and its
    ``feature_info`` entry."""
    stages = list(getattr(model, "feature_info", []) or [])
    if not stages:
        raise ValueError(f"{type(model).__name__} describes no feature stages (feature_info)")
    fine_enough = [s for s in stages if s["reduction"] <= max(1, image_size // CELLS_ACROSS)]
    if not fine_enough:  # the finest there is: a ViT's blocks all share one reduction
        finest = min(s["reduction"] for s in stages)
        fine_enough = [s for s in stages if s["reduction"] == finest]
    stage = fine_enough[-1]
    return stage["module"], stage


def reshape_transform(channels: int, prefix_tokens: int):
    """What turns the stage's output into (B, C, H, W): nothing, a permutation from channels
    last, or tokens folded into their square grid after the ``prefix_tokens`` class tokens."""

    def to_maps(x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # (B, tokens, C)
            tokens = x[:, prefix_tokens:]
            side = math.isqrt(tokens.shape[1])
            return tokens.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)
        if x.ndim == 4 and x.shape[1] != channels and x.shape[-1] == channels:
            return x.permute(0, 3, 1, 2)
        return x

    return to_maps


def saliency_maps(model: nn.Module, output: int, pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Grad-CAM of logit ``output`` of ``model`` for each (size, size) uint8 image of
    ``pixels``: (n, size, size) maps in [0, 1], towards the positive class."""
    model = model.eval().float()
    name, stage = target_layer(model, image_size)
    transform = reshape_transform(stage["num_chs"], getattr(model, "num_prefix_tokens", 0))
    wrapped = OneLogit(model, output)
    batch = to_model_input(torch.from_numpy(np.ascontiguousarray(pixels)), torch.device("cpu"))
    with GradCAM(wrapped, [model.get_submodule(name)], reshape_transform=transform) as cam:
        maps = cam(batch, targets=[BinaryClassifierOutputTarget(1)] * len(batch))
    return np.nan_to_num(np.asarray(maps, dtype=float))


def plot_saliency(
    images: list[np.ndarray],
    maps: dict[str, np.ndarray],
    titles: dict[str, list[str]],
    row_labels: list[str],
    paths: list[str | os.PathLike],
    title: str,
    dpi: int = 200,
) -> None:
    """A grid: a row per image, its X-ray first and then a column per disease with that disease
    model's Grad-CAM over it (``titles[disease][i]`` above each panel)."""
    diseases = list(maps)
    rows, columns = len(images), len(diseases) + 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.1 * columns, 2.3 * rows + 0.6), squeeze=False
    )
    for i, image in enumerate(images):
        axes[i, 0].imshow(image, cmap="gray")
        axes[i, 0].set_title(row_labels[i], fontsize=7)
        for j, disease in enumerate(diseases, start=1):
            heat = _resized(maps[disease][i], image.shape)
            axes[i, j].imshow(image, cmap="gray")
            axes[i, j].imshow(heat, cmap="jet", alpha=0.4, vmin=0, vmax=1)
            above = f"{disease}\n" if i == 0 else ""
            axes[i, j].set_title(above + titles[disease][i], fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, paths, dpi)


def _resized(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``heat`` bilinearly resized to ``shape`` (the display image's)."""
    tensor = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(
        tensor, size=shape, mode="bilinear", align_corners=False
    )[0, 0].numpy()


def saliency_figure(
    images: list[str],
    table: pd.DataFrame,
    models: dict[str, str],
    image_size: int,
    paths: list[str | os.PathLike],
    title: str,
    dpi: int = 200,
) -> None:
    """:func:`plot_saliency` of ``images`` for each disease's model file of ``models``
    (disease -> file; the warm-up's one file serves all), each panel titled with the
    calibrated probability and the label that ``table`` (the architecture's test predictions)
    holds for it."""
    pixels = np.stack([load_image(image, image_size) for image in images])
    known = table.set_index(["image", "disease"])
    loaded, maps, titles = {}, {}, {}
    for disease, path in models.items():
        if path not in loaded:
            loaded[path] = load_model(path)
        model, meta = loaded[path]
        maps[disease] = saliency_maps(model, meta["outputs"].index(disease), pixels, image_size)
        titles[disease] = [
            f"p = {known.at[(image, disease), 'probability']:.2f}, "
            + ("GT +" if known.at[(image, disease), "y_true"] == 1 else "GT -")
            if (image, disease) in known.index
            else "label ignored"
            for image in images
        ]
    plot_saliency(
        [load_image(image, DISPLAY) for image in images],
        maps,
        titles,
        [f"test image {i + 1}" for i in range(len(images))],
        paths,
        title,
        dpi,
    )
