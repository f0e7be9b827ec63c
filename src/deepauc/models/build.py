"""Building timm models for chest X-rays: by name, at any image size, with any starting weights.

``create_model`` is the one way to get a network; ``replace_head`` turns a warm-up network into a
single-disease one. Inputs are three-channel (the grayscale image repeated), so that ImageNet
weights load unchanged.
"""

import logging
import os
from pathlib import Path

import timm
import torch
from torch import nn

from deepauc.errors import InputError
from deepauc.models import timm_index
from deepauc.models.weights import describe_weights_file, weights_file

log = logging.getLogger(__name__)


def create_model(
    arch: str,
    num_outputs: int,
    image_size: int,
    pretrained: bool | str | os.PathLike = False,
) -> nn.Module:
    """A timm model ``arch`` with ``num_outputs`` logits for square images of ``image_size``.

    Args:
        arch: any timm model name, e.g. ``convnext_tiny``, ``densenet169``,
            ``swin_tiny_patch4_window7_224``, ``davit_tiny``.
        num_outputs: size of the new classification head.
        image_size: input height and width; window-attention models get windows that fit it.
        pretrained: ``False`` (random init), ``True`` (timm's weights from the model hub) or the
            path of a local weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) for
            ``arch``, a folder of ``<arch>.<suffix>`` files, or a path with ``{arch}`` in it
            (e.g. another run's ``results/models/{arch}/seed0/warmup.pt``). The original head
            is dropped either way.

    Example::

        model = create_model("densenet169", num_outputs=5, image_size=224, pretrained=False)
    """
    check_architectures([arch])
    kwargs = dict(num_classes=num_outputs, **size_kwargs(arch, image_size))
    if pretrained is False:
        return timm.create_model(arch, pretrained=False, **kwargs)
    if pretrained is True:
        return _from_hub(arch, kwargs)
    return _from_file(arch, Path(str(pretrained).replace("{arch}", arch)), kwargs)


def check_architectures(names: list[str]) -> None:
    """Refuse the first name that is not a timm model, suggesting the closest ones."""
    if not all(timm.is_model(arch) for arch in names):
        timm_index.check_architectures(names, timm.list_models())


def size_kwargs(arch: str, image_size: int) -> dict:
    """timm arguments that let ``arch`` take ``image_size`` inputs.

    Swin's windows must tile every stage's feature map: at 224 px a 7x7 window fits
    (56, 28, 14, 7), at 128 px it does not (32, 16, 8, 4), so the largest window up to the
    model's own that divides the last stage is used. Models with fixed position embeddings get
    ``img_size``; convolutional networks take any size as they are.
    """
    if arch.startswith("swin"):
        patch, stages = 4, 4
        last = image_size // patch // 2 ** (stages - 1)
        if image_size % (patch * 2 ** (stages - 1)) or last < 1:
            raise InputError(
                f"{arch} needs an image size divisible by {patch * 2 ** (stages - 1)}, "
                f"got {image_size}",
                where="config key image_size",
            )
        default_window = int(timm.get_pretrained_cfg_value(arch, "input_size")[-1]) // 32
        window = max(w for w in range(1, max(default_window, 1) + 1) if last % w == 0)
        return {"img_size": image_size, "window_size": window}
    if arch.startswith(("vit", "deit", "beit", "eva")):
        return {"img_size": image_size}
    return {}


def replace_head(model: nn.Module, num_outputs: int) -> nn.Module:
    """Give ``model`` a freshly initialised head of ``num_outputs``, keeping the backbone as is."""
    model.reset_classifier(num_outputs)
    return model


def _from_hub(arch: str, kwargs: dict) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as err:  # the hub's failures come as many exception types
        raise InputError(
            f"could not load timm's pretrained weights for {arch!r} ({type(err).__name__}: {err})",
            where="config key pretrained",
            fix="without access to the model hub, download the weights elsewhere and set "
            "pretrained to the file (one architecture) or to a folder holding "
            f"{arch}.safetensors (or .pth/.bin), or set pretrained: false to train from scratch.",
        ) from err


class _MissingKeys(logging.Handler):
    """The keys timm reports missing while it loads pretrained weights: with a head of another
    size it loads with ``strict=False``, so a file whose keys match nothing (saved with a
    ``model.`` prefix, say) would load silently and start the network from random weights."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.missing: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Missing keys ("):
            self.missing += message[len("Missing keys (") :].split(")")[0].split(", ")


def _check_loaded(arch: str, file: Path, model: nn.Module, missing: list[str]) -> None:
    """Refuse a weights file that left most of the backbone at its random start."""
    classifier = {
        name for name, module in model.named_modules() if module is model.get_classifier()
    }
    backbone = [  # BatchNorm's step counters are never reported missing
        key
        for key in model.state_dict()
        if not any(key.startswith(f"{c}.") for c in classifier)
        and not key.endswith("num_batches_tracked")
    ]
    left = [key for key in missing if key in backbone]
    if len(left) * 2 > len(backbone):
        raise InputError(
            f"only {len(backbone) - len(left)} of {arch}'s {len(backbone)} backbone tensors were "
            f"found in the file (missing e.g. {left[0]!r}): it was saved with other key names",
            where=f"{file} (config key pretrained)",
            fix=f"save timm's {arch} state_dict() as it is (keys like {backbone[0]!r}, without "
            "a prefix such as 'model.'), or set pretrained: false.",
        )
    if left:
        log.warning(
            "%s: %d of %d backbone tensors not in %s (random start for them), e.g. %s",
            arch,
            len(left),
            len(backbone),
            file,
            ", ".join(left[:3]),
        )


def _from_file(arch: str, path: Path, kwargs: dict) -> nn.Module:
    file = weights_file(arch, path)
    capture = _MissingKeys()
    timm_log = logging.getLogger("timm")
    level = timm_log.level
    timm_log.addHandler(capture)
    timm_log.setLevel(logging.INFO)
    try:
        model = timm.create_model(
            arch, pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **kwargs
        )
    except Exception as err:  # safetensors, pickle, zip and torch each fail their own way
        raise InputError(
            f"{describe_weights_file(file)}; expected a timm state dict of {arch!r} "
            f"(.safetensors, .pth or .bin) [{type(err).__name__}: {str(err)[:200]}]",
            where=f"{file} (config key pretrained)",
            fix="download the weights again (a proxy or login page saved as the file, or an "
            f"interrupted download, look like this), or point pretrained at {arch}'s weights, "
            "or set pretrained: false.",
        ) from err
    finally:
        timm_log.removeHandler(capture)
        timm_log.setLevel(level)
    _check_loaded(arch, file, model, capture.missing)
    log.info("%s: initialised from %s", arch, file)
    return model


class HeadInFp32(nn.Module):
    """``model`` with its classifier head computed in fp32 while the backbone runs under the
    caller's autocast (bf16 on a GPU). A bf16 logit has 8 bits of mantissa: logits of a
    confident model tie, and so would the AUC that ranks them. Shares ``model``'s weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(images)
        with torch.autocast(images.device.type, enabled=False):
            return self.model.forward_head(features.float())


def init_head_from_row(model: nn.Module, warm: nn.Module, row: int) -> nn.Module:
    """Give ``model``'s one-logit head the weights of row ``row`` of the head ``warm`` (the
    warm-up's logit of one disease), so that the fine-tune starts where the warm-up's model of
    that disease stands."""
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(warm.weight[row : row + 1])
        if head.bias is not None:
            head.bias.copy_(warm.bias[row : row + 1])
    return model


def zero_head(model: nn.Module) -> nn.Module:
    """Set the last layer of ``model``'s classifier to zero, so that every seed starts from the
    same head (logit 0 for every image) and the gradient reaches the backbone from the second
    step on. A head that is not one linear (or 1x1 convolution) layer is left as it is: zeroing
    a hidden layer would stop its gradient for good."""
    head = model.get_classifier()
    if isinstance(head, (nn.Linear, nn.Conv2d)):
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
    else:
        log.info("%s: its head (%s) kept timm's random init", type(model).__name__, head)
    return model
