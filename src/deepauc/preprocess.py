"""From CheXpert CSVs to validated split files: the pipeline's one way into the data.

``prepare_splits`` reads the training and test CSVs, keeps the configured views, resolves image
files, maps labels with the uncertainty policy, splits the training CSV into train and val by
patient, and audits the labels of every split. ``write_splits`` saves the result atomically.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deepauc import DEFAULT_DISEASES
from deepauc.atomic import write_csv
from deepauc.chexpert import LABEL_COLUMNS, PATH_PREFIXES, read_chexpert_csv
from deepauc.errors import InputError
from deepauc.labels import DEFAULT_POLICY, apply_policy, audit_labels, policy_for
from deepauc.splits import split_by_patient

log = logging.getLogger(__name__)

VIEWS = ("Frontal", "Lateral")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PreprocessSettings:
    """What preprocessing needs from the config; the defaults are the DAM recipe's."""

    diseases: tuple[str, ...] = DEFAULT_DISEASES
    uncertainty: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    views: tuple[str, ...] = ("Frontal",)
    val_fraction: float = 0.1
    seed: int = 0
    check_images: bool = True

    def __post_init__(self):
        unknown = [d for d in self.diseases if d not in LABEL_COLUMNS]
        if unknown:
            raise InputError(
                f"unknown disease(s) {', '.join(map(repr, unknown))}",
                where="config key diseases",
                fix=f"use CheXpert label columns: {', '.join(LABEL_COLUMNS)}.",
            )
        if len(set(self.diseases)) != len(self.diseases):
            raise InputError("a disease is listed twice", where="config key diseases")
        bad_views = [v for v in self.views if v not in VIEWS]
        if bad_views or not self.views:
            raise InputError(
                f"views must be a non-empty subset of {VIEWS}, got {list(self.views)}",
                where="config key views",
            )
        for disease in self.diseases:
            policy_for(disease, self.uncertainty)


@dataclass(frozen=True)
class Splits:
    """The three split tables (one row per image) and the label audit."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    audit: pd.DataFrame

    def table(self, split: str) -> pd.DataFrame:
        return {"train": self.train, "val": self.val, "test": self.test}[split]


def prepare_splits(
    train_csv: str | os.PathLike,
    test_csv: str | os.PathLike,
    data_root: str | os.PathLike,
    dataset_dir: str,
    settings: PreprocessSettings,
    require_scorable: bool = True,
) -> Splits:
    """Read, filter, label and split; see the module docstring.

    With ``require_scorable`` (the default), a val or test split that lacks positives or
    negatives for a disease is an error: its AUC, and so model selection, would be undefined.

    ``data_root`` is the folder that holds the dataset folder (``dataset_dir``, e.g.
    ``CheXpert-v1.0-small``); ``Path`` values are relative to it, and either release's prefix is
    read as ``dataset_dir``.
    """
    diseases = list(settings.diseases)
    train_raw = _load(train_csv, data_root, dataset_dir, settings)
    test_raw = _load(test_csv, data_root, dataset_dir, settings)

    train_part, val_part = split_by_patient(train_raw, settings.val_fraction, settings.seed)
    overlap = set(train_raw["patient"]) & set(test_raw["patient"])
    if overlap:
        log.warning(
            "%d patient(s) appear in both %s and %s, e.g. %s: the test split is not independent",
            len(overlap),
            train_csv,
            test_csv,
            sorted(overlap)[0],
        )

    tables, audits = {}, []
    for split, raw in (("train", train_part), ("val", val_part), ("test", test_raw)):
        mapped = _label_table(raw, settings)
        audits.append(audit_labels(raw, mapped, diseases, split))
        tables[split] = mapped
    audit = pd.concat(audits, ignore_index=True)
    if require_scorable:
        _require_both_classes(audit, ("val", "test"))
    for split in SPLITS:
        log.info(
            "%s: %d images of %d patients",
            split,
            len(tables[split]),
            tables[split]["patient"].nunique(),
        )
    return Splits(audit=audit, **tables)


def write_splits(splits: Splits, paths: dict[str, str | os.PathLike]) -> None:
    """Write ``train``, ``val``, ``test`` and ``audit`` to the files named in ``paths``."""
    for split in SPLITS:
        write_csv(splits.table(split), paths[split])
    write_csv(splits.audit, paths["audit"])


def _load(csv_path, data_root, dataset_dir, settings: PreprocessSettings) -> pd.DataFrame:
    frame = read_chexpert_csv(csv_path, tuple(settings.diseases))
    views = frame["Frontal/Lateral"].str.strip()
    unknown = ~views.isin(VIEWS)
    if unknown.any():
        first = unknown.idxmax()
        raise InputError(
            f"column 'Frontal/Lateral' holds {frame.at[first, 'Frontal/Lateral']!r}",
            where=f"{csv_path}, line {first + 2}",
            fix="each row's view must be Frontal or Lateral.",
        )
    frame["view"] = views
    kept = frame[views.isin(settings.views)].reset_index(drop=True)
    log.info(
        "%s: %d rows, %d kept with views %s", csv_path, len(frame), len(kept), list(settings.views)
    )
    if kept.empty:
        raise InputError(
            f"no rows left after keeping views {list(settings.views)}",
            where=str(csv_path),
            fix="check the Frontal/Lateral column, or widen the `views` config key.",
        )
    kept["image"] = _image_paths(kept["Path"], Path(data_root), dataset_dir)
    if settings.check_images:
        _require_images(kept, csv_path, data_root)
    return kept


def _image_paths(paths: pd.Series, data_root: Path, dataset_dir: str) -> pd.Series:
    def resolve(value: str) -> str:
        for prefix in PATH_PREFIXES:
            if value.startswith(prefix):
                return str(data_root / dataset_dir / value[len(prefix) :])
        return str(data_root / value)

    return paths.map(resolve)


def _require_images(frame: pd.DataFrame, csv_path, data_root) -> None:
    missing = ~frame["image"].map(os.path.isfile)
    if missing.any():
        first = missing.idxmax()
        raise InputError(
            f"{int(missing.sum())} of {len(frame)} image(s) not found, the first "
            f"{frame.at[first, 'image']!r} (Path {frame.at[first, 'Path']!r})",
            where=f"{csv_path}, line {frame.at[first, 'csv_line']}",
            fix=f"set data_root (now {str(data_root)!r}) to the folder that holds the dataset "
            "folder, or set check_images: false to skip this check.",
        )


def _label_table(raw: pd.DataFrame, settings: PreprocessSettings) -> pd.DataFrame:
    table = raw[["image", "patient", "study", "view"]].copy()
    for disease in settings.diseases:
        table[disease] = apply_policy(raw[disease], policy_for(disease, settings.uncertainty))
    return table


def _require_both_classes(audit: pd.DataFrame, splits: tuple[str, ...]) -> None:
    scored = audit[audit["split"].isin(splits)]
    lacking = scored[(scored["positive"] == 0) | (scored["negative"] == 0)]
    if not lacking.empty:
        row = lacking.iloc[0]
        raise InputError(
            f"split {row['split']!r} has {row['positive']} positive and {row['negative']} "
            f"negative label(s) for {row['disease']!r}: its AUC is undefined",
            where=f"{row['split']} split",
            fix="use more data (or a larger split.val_fraction), or drop that disease from "
            "`diseases`.",
        )
