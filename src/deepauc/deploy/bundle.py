"""Export: a predictor as a self-contained folder for a deployment team.

``results/export/{predictor}/{method}/`` holds

- ``weights.safetensors``: every network's weights and the predictor's buffers (calibration,
  the rank combine's val references), no pickle;
- ``card.json``: what a loader needs and what a reviewer asks: architectures and their timm
  arguments, image size, normalization, disease order, how networks combine, calibration,
  val-chosen thresholds, and each network's training provenance;
- ``predictor.torchscript.pt``: the same predictor traced with TorchScript, loadable with
  torch alone (``torch.jit.load``);
- ``parity.csv``: the exported model's outputs against the pipeline's scoring of the same test
  images; :func:`export_predictor` refuses to finish when they differ by more than
  :data:`PARITY_TOLERANCE`.

:func:`load_bundle` rebuilds the predictor from the safetensors file and the card alone: it
unpickles nothing.
"""

import hashlib
import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import deepauc
from deepauc.atomic import atomic_path, write_csv
from deepauc.data.cache import open_cache
from deepauc.data.images import IMAGENET_MEAN, IMAGENET_STD, CachedSplit
from deepauc.deploy.predictor import PredictorModule, build_predictor
from deepauc.errors import InputError
from deepauc.models.build import create_model, size_kwargs
from deepauc.text import compared
from deepauc.training.loaders import eval_loader
from deepauc.training.runtime import Runtime
from deepauc.training.scoring import predict_logits

CARD_FORMAT = "deepauc-predictor/1"
PARITY_TOLERANCE = 1e-4
CARD, WEIGHTS, TORCHSCRIPT, PARITY = (
    "card.json",
    "weights.safetensors",
    "predictor.torchscript.pt",
    "parity.csv",
)


def export_predictor(
    plan: dict,
    diseases: list[str],
    final_val: pd.DataFrame,
    test: CachedSplit,
    folder: str | os.PathLike,
    provenance: dict,
    parity_images: int = 64,
) -> dict:
    """Build the predictor of ``plan`` (``deepauc.deploy.predictor``), check it against the
    pipeline's scoring on the first ``parity_images`` test images, and write the folder (see
    the module docstring). Returns the card."""
    folder = Path(folder)
    module, networks, programs, thresholds = build_predictor(plan, diseases, final_val)
    size = networks[0].meta["image_size"]
    rows = np.arange(min(parity_images, len(test.table)))
    pixels = open_cache(test.cache, len(test.table), size)[rows]
    images = torch.from_numpy(np.ascontiguousarray(pixels))
    traced = trace(module, images)
    parity = parity_table(module, traced, networks, test, rows, images)
    worst = float(parity["max_abs_difference"].max())
    card = {
        "format": CARD_FORMAT,
        "predictor": plan["name"],
        "method": provenance.get("method"),
        "diseases": diseases,
        "image_size": size,
        "input": {
            "pixels": "grayscale uint8, resized to image_size x image_size (bilinear), "
            "as a (batch, height, width) tensor",
            "normalization": {"scale": 1 / 255, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
            "channels": "the gray channel repeated to three, then normalized per channel",
        },
        "outputs": {
            "scores": "per disease, on the scale of the thresholds (logits; mean percentile "
            "ranks among val for a rank combine)",
            "probabilities": "sigmoid(slope * score + intercept), Platt-scaled on val",
            "decision": "positive where score > thresholds[disease][operating point]",
        },
        "networks": [
            {
                "arch": n.meta["arch"],
                "outputs": n.meta["outputs"],
                "timm_kwargs": {
                    "num_classes": len(n.meta["outputs"]),
                    **size_kwargs(n.meta["arch"], n.meta["image_size"]),
                },
                "weights_prefix": f"networks.{k}.",
                "training": {key: value for key, value in n.meta.items() if key != "outputs"},
                "source": n.source,
                "sha256": file_digest(n.source),
            }
            for k, n in enumerate(networks)
        ],
        "programs": programs,
        "calibration": {
            d: {"slope": float(module.slope[j]), "intercept": float(module.intercept[j])}
            for j, d in enumerate(diseases)
        },
        "thresholds": thresholds,
        "parity": {"max_abs_difference": worst, "tolerance": PARITY_TOLERANCE},
        "provenance": {
            **provenance,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "deepauc": deepauc.__version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
        },
    }
    if not worst <= PARITY_TOLERANCE:
        raise InputError(
            "the exported predictor differs from the pipeline's scoring by "
            f"{compared(worst, '>', PARITY_TOLERANCE, digits=3)} (the tolerance): not exported",
            where=str(folder),
            fix=f"see the rows of {PARITY} in the log above; report it with the architecture.",
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(parity, folder / PARITY)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
    with atomic_path(folder / TORCHSCRIPT) as tmp:
        traced.save(str(tmp))
    with atomic_path(folder / CARD) as tmp:
        tmp.write_text(json.dumps(card, indent=1, default=str) + "\n")
    return card


def trace(module: PredictorModule, images: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's tracer warns of every Python branch
        return torch.jit.trace(module, images[:2], check_trace=False)


def parity_table(module, traced, networks, test: CachedSplit, rows, images) -> pd.DataFrame:
    """Per network and output, the largest difference between the traced export's logits and
    the pipeline's own scoring (``predict_logits`` on the image cache, fp32 on the CPU); and
    between the traced and the eager predictor's scores and probabilities."""
    runtime = Runtime(device=torch.device("cpu"))
    with torch.no_grad():
        scores, probabilities, logits = (t.numpy() for t in traced(images))
        eager = [t.numpy() for t in module(images)]
    out, column = [], 0
    for k, network in enumerate(networks):
        outputs = network.meta["outputs"]
        subset = subset_images(test, outputs, network.meta["image_size"], rows)
        pipeline = predict_logits(network.model, eval_loader(subset, 64, runtime), runtime)
        for j, disease in enumerate(outputs):
            out.append(
                {
                    "compared": f"network {k} ({network.meta['arch']}) logit",
                    "disease": disease,
                    "images": len(rows),
                    "max_abs_difference": float(np.abs(logits[:, column] - pipeline[:, j]).max()),
                }
            )
            column += 1
    for name, traced_part, eager_part in (
        ("score", scores, eager[0]),
        ("probability", probabilities, eager[1]),
    ):
        for j, disease in enumerate(module.diseases):
            out.append(
                {
                    "compared": f"traced vs eager {name}",
                    "disease": disease,
                    "images": len(rows),
                    "max_abs_difference": float(np.abs(traced_part[:, j] - eager_part[:, j]).max()),
                }
            )
    return pd.DataFrame(out)


def subset_images(split: CachedSplit, outputs: list[str], size: int, rows: np.ndarray):
    keep = np.zeros(len(split.table), bool)
    keep[rows] = True
    return split.images(outputs, size, keep)


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(folder: str | os.PathLike) -> tuple[PredictorModule, dict]:
    """The exported predictor of ``folder`` from its card and safetensors weights alone."""
    folder = Path(folder)
    try:
        card = json.loads((folder / CARD).read_text())
        weights = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError, SafetensorError) as err:
        raise InputError(
            f"cannot read the exported predictor ({err})",
            where=str(folder),
            fix="rerun the export rule that makes it (results/export/<predictor>/<method>/).",
        ) from err
    if card.get("format") != CARD_FORMAT:
        raise InputError(
            f"card format {card.get('format')!r}, expected {CARD_FORMAT!r}",
            where=str(folder / CARD),
            fix="export it again with this version of the pipeline.",
        )
    networks = [
        create_model(n["arch"], len(n["outputs"]), card["image_size"]) for n in card["networks"]
    ]
    references = {k: v for k, v in weights.items() if k.startswith("reference_")}
    diseases = card["diseases"]
    module = PredictorModule(
        networks,
        diseases,
        card["programs"],
        references,
        [card["calibration"][d]["slope"] for d in diseases],
        [card["calibration"][d]["intercept"] for d in diseases],
    )
    module.load_state_dict(weights)
    return module.eval(), card
