"""Scoring new images with exported predictors (``deepauc.deploy.bundle``): never retraining.

An image set is a CSV of image paths (CheXpert's ``Path`` column, or ``image``), optionally
with label columns named as the diseases, or a folder whose image files are all scored. Each
image is decoded as the training split's were (grayscale, resized to the training size); one
that cannot be read is listed with the reason and the rest are scored. A CSV with CheXpert's
``Frontal/Lateral`` column keeps the views the models were trained on (config key ``views``),
as the test split did; the others are listed too.

The scores table has one row per image, predictor and disease: ``image, patient, predictor,
method, disease, score, probability`` and a 0/1 decision per val-chosen operating point
(``sens90``: the threshold at which val reached 90% specificity, and so on), plus ``y_true``
where the set has labels. With labels, the same metrics as ``results/summary.csv`` are
computed, at the exported thresholds.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepauc.data.cache import try_load_image
from deepauc.data.chexpert import NEGATIVE, POSITIVE, UNCERTAIN
from deepauc.data.labels import apply_policy, policy_for
from deepauc.deploy.bundle import load_bundle
from deepauc.errors import InputError
from deepauc.evaluation.operating_points import SPECIFICITIES
from deepauc.evaluation.scores import score_predictions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
PATH_COLUMNS = ("Path", "image", "path")
_PATIENT = re.compile(r"(patient\d+)/")


VIEW_COLUMN = "Frontal/Lateral"
SKIPPED_COLUMNS = ["image", "reason"]


@dataclass
class ImageSet:
    """The images of a set to score, their labels (NaN where unknown) and patients, and the
    images left out before scoring (a view the models were not trained on) with the reason."""

    table: pd.DataFrame  # image, patient, and a column per labelled disease
    labelled: list[str]  # the diseases the set has labels for
    skipped: pd.DataFrame = None  # image, reason

    def __post_init__(self):
        if self.skipped is None:
            self.skipped = pd.DataFrame(columns=SKIPPED_COLUMNS)


def read_image_set(
    spec: dict,
    diseases: list[str],
    policies: dict[str, str],
    where: str,
    views: list[str] | tuple[str, ...] = ("Frontal", "Lateral"),
) -> ImageSet:
    """The image set of a config entry: ``{csv: file, root: folder}`` (paths relative to
    ``root``, by default the CSV's folder) or ``{folder: folder}``. ``where`` names the config
    key in errors. A CSV with CheXpert's ``Frontal/Lateral`` column keeps the ``views`` the
    models were trained on (the entry's own ``views`` if it has them); the others are listed
    as skipped."""
    if ("csv" in spec) == ("folder" in spec):
        raise InputError(
            "an image set names either a csv or a folder",
            where=f"config key {where}",
            fix="give `csv: path/to/images.csv` (a Path column) or `folder: path/to/images`.",
        )
    if "folder" in spec:
        folder = Path(spec["folder"])
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder", where=f"config key {where}.folder")
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise InputError(
                f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}",
                where=f"config key {where}.folder",
            )
        images = [str(p) for p in files]
        return ImageSet(pd.DataFrame({"image": images, "patient": patients_of(images)}), [])
    csv = Path(spec["csv"])
    try:
        raw = pd.read_csv(csv)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the image list ({err})", where=str(csv)) from err
    column = next((c for c in PATH_COLUMNS if c in raw.columns), None)
    if column is None:
        raise InputError(
            f"no column of image paths (one of {', '.join(PATH_COLUMNS)}) among "
            f"{list(raw.columns)[:8]}",
            where=str(csv),
            fix="name the column of image paths Path, as CheXpert's CSVs do.",
        )
    root = Path(spec.get("root") or csv.parent)
    images = [str(root / p) if not os.path.isabs(str(p)) else str(p) for p in raw[column]]
    repeated = pd.Series(images).duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        raise InputError(
            f"image {images[row]!r} is listed twice",
            where=f"{csv}, row {row + 2}",
            fix="list each image once.",
        )
    table = pd.DataFrame({"image": images})
    table["patient"] = raw["patient"].astype(str) if "patient" in raw else patients_of(images)
    skipped = pd.DataFrame(columns=SKIPPED_COLUMNS)
    if VIEW_COLUMN in raw.columns:
        wanted = list(spec.get("views", views))
        view = raw[VIEW_COLUMN].astype(str).str.strip()
        keep = view.isin(wanted).to_numpy()
        skipped = pd.DataFrame(
            {
                "image": table.loc[~keep, "image"],
                "reason": [
                    f"{v} view: the models were trained on {', '.join(wanted)} (set "
                    f"{where}.views to score it)"
                    for v in view[~keep]
                ],
            }
        )
        table, raw = table[keep].reset_index(drop=True), raw[keep].reset_index(drop=True)
    labelled = [d for d in diseases if d in raw.columns]
    for disease in labelled:
        values = pd.to_numeric(raw[disease], errors="coerce")
        bad = values.notna() & ~values.isin([POSITIVE, NEGATIVE, UNCERTAIN])
        bad |= values.isna() & raw[disease].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"label {raw[disease].iloc[row]!r} of {disease!r} is not 1, 0, -1 or blank",
                where=f"{csv}, row {row + 2}",
                fix="use CheXpert's codes (1 positive, 0 negative, -1 uncertain, blank "
                "not mentioned) or drop the column to score without labels.",
            )
        mapped = apply_policy(values, policy_for(disease, policies))
        table[disease] = mapped.astype(float)
    return ImageSet(table, labelled, skipped.reset_index(drop=True))


def patients_of(images: list[str]) -> list[str]:
    """CheXpert's patientNNNNN in a path, else the image itself: bootstrap intervals then
    resample images, each its own patient."""
    out = []
    for image in images:
        found = _PATIENT.search(image.replace("\\", "/"))
        out.append(found.group(1) if found else image)
    return out


def decode_set(images: list[str], size: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``(pixels, readable, unreadable)``: the readable images as (n, size, size) uint8, a
    mask of which were readable, and ``image, reason`` of the rest."""
    pixels, readable, unreadable = [], np.zeros(len(images), bool), []
    for i, image in enumerate(images):
        decoded = try_load_image(image, size)
        if isinstance(decoded, Exception):  # missing, not an image, truncated
            unreadable.append({"image": image, "reason": f"{type(decoded).__name__}: {decoded}"})
        else:
            pixels.append(decoded)
            readable[i] = True
    stacked = np.stack(pixels) if pixels else np.zeros((0, size, size), np.uint8)
    return stacked, readable, pd.DataFrame(unreadable, columns=["image", "reason"])


def score_set(
    image_set: ImageSet,
    bundles: dict[tuple[str, str], str | os.PathLike],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score ``image_set`` with each exported predictor of ``bundles`` ((predictor, method) ->
    its export folder). Returns ``(scores, skipped, cards)``: ``skipped`` lists ``image, reason``
    of every image not scored (left out by view, or unreadable); see the module docstring."""
    frames, unreadable, cards, decoded = [], None, {}, {}
    for (predictor, method), folder in bundles.items():
        module, card = load_bundle(folder)
        cards[(predictor, method)] = card
        size = card["image_size"]
        if size not in decoded:
            decoded[size] = decode_set(list(image_set.table["image"]), size)
        pixels, readable, missing = decoded[size]
        unreadable = missing if unreadable is None else unreadable
        module = module.to(device)
        parts = []
        with torch.no_grad():
            for start in range(0, len(pixels), batch_size):
                batch = torch.from_numpy(pixels[start : start + batch_size]).to(device)
                scores, probabilities, _ = module(batch)
                parts.append((scores.cpu().numpy(), probabilities.cpu().numpy()))
        if not parts:
            continue
        scores = np.concatenate([p[0] for p in parts])
        probabilities = np.concatenate([p[1] for p in parts])
        rows = image_set.table[readable].reset_index(drop=True)
        for j, disease in enumerate(card["diseases"]):
            frame = pd.DataFrame(
                {
                    "image": rows["image"],
                    "patient": rows["patient"],
                    "predictor": predictor,
                    "method": method,
                    "disease": disease,
                    "score": scores[:, j],
                    "probability": probabilities[:, j],
                }
            )
            for point in SPECIFICITIES:
                threshold = card["thresholds"][disease][point]
                frame[point] = (scores[:, j] > threshold).astype(int)
            if disease in image_set.labelled:
                frame["y_true"] = rows[disease].to_numpy()
            frames.append(frame)
    if unreadable is None:
        unreadable = pd.DataFrame(columns=SKIPPED_COLUMNS)
    skipped = pd.concat([image_set.skipped, unreadable], ignore_index=True)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, skipped, cards


def set_metrics(
    scores: pd.DataFrame, cards: dict, n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per predictor, method and labelled disease (and their mean), the summary's metrics with
    patient-bootstrap intervals, at each predictor's exported thresholds. Empty without
    labels."""
    if scores.empty or "y_true" not in scores:
        return pd.DataFrame(columns=["predictor", "method", "disease"])
    frames = []
    for (predictor, method), rows in scores.groupby(["predictor", "method"], sort=False):
        labelled = rows[rows["y_true"].notna()]
        if labelled.empty:
            continue
        diseases = list(dict.fromkeys(labelled["disease"]))
        thresholds = {
            point: [cards[(predictor, method)]["thresholds"][d][point] for d in diseases]
            for point in SPECIFICITIES
        }
        metrics = score_predictions(labelled, n_resamples, seed, thresholds=thresholds)
        frames.append(metrics.assign(predictor=predictor, method=method))
    if not frames:
        return pd.DataFrame(columns=["predictor", "method", "disease"])
    table = pd.concat(frames, ignore_index=True)
    first = ["predictor", "method", "disease"]
    return table[first + [c for c in table.columns if c not in first]]
