"""From CheXpert CSVs to validated split files: the pipeline's one way into the data.

``prepare_splits`` reads the training and test CSVs, keeps the configured views, resolves image
files, maps labels with the uncertainty policy, splits the training CSV into train and val by
patient, and audits the labels of every split. ``write_splits`` saves the result atomically.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from deepauc import DEFAULT_DISEASES
from deepauc.atomic import write_csv
from deepauc.data.chexpert import LABEL_COLUMNS, PATH_PREFIXES, read_chexpert_csv
from deepauc.data.labels import DEFAULT_POLICY, apply_policy, audit_labels, policy_for
from deepauc.data.splits import few_cases, split_by_patient
from deepauc.errors import InputError

log = logging.getLogger(__name__)

VIEWS = ("Frontal", "Lateral")
SPLITS = ("train", "val", "test")
BAD_IMAGE_ACTIONS = ("error", "skip")
SKIPPED_COLUMNS = ["csv", "line", "Path", "image", "reason"]


@dataclass(frozen=True)
class PreprocessSettings:
    """What preprocessing needs from the config; the defaults are the DAM recipe's."""

    diseases: tuple[str, ...] = DEFAULT_DISEASES
    uncertainty: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    views: tuple[str, ...] = ("Frontal",)
    val_fraction: float = 0.1
    seed: int = 0
    check_images: bool = True
    on_bad_image: str = "error"  # a missing or undecodable image: stop, or drop its row
    workers: int = 1  # threads that decode images to check them

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
        if self.on_bad_image not in BAD_IMAGE_ACTIONS:
            raise InputError(
                f"on_bad_image must be one of {BAD_IMAGE_ACTIONS}, got {self.on_bad_image!r}",
                where="config key on_bad_image",
            )


@dataclass(frozen=True)
class Splits:
    """The three split tables (one row per image), the label audit, and the skipped images."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    audit: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIPPED_COLUMNS))

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
    skipped: list[pd.DataFrame] = []
    train_raw = _load(train_csv, data_root, dataset_dir, settings, skipped)
    test_raw = _load(test_csv, data_root, dataset_dir, settings, skipped)

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
    skipped_table = pd.DataFrame(columns=SKIPPED_COLUMNS)
    if skipped:
        # The labels the skipped images took with them, so the audit shows what was lost.
        lost = pd.concat(skipped, ignore_index=True)
        audits.append(audit_labels(lost, _label_table(lost, settings), diseases, "skipped"))
        skipped_table = lost[SKIPPED_COLUMNS]
    audit = pd.concat(audits, ignore_index=True)
    if require_scorable:
        _require_both_classes(audit, ("val", "test"), test_csv)
    for row in audit[audit["split"].isin(("val", "test"))].itertuples():
        few = few_cases(row.split, row.positive, row.negative)
        if few:
            log.warning(
                "%s for %s: its AUC means little (the confidence interval spans much of "
                "[0, 1]); results/summary.csv marks it in column caution",
                few,
                row.disease,
            )
    for split in SPLITS:
        log.info(
            "%s: %d images of %d patients",
            split,
            len(tables[split]),
            tables[split]["patient"].nunique(),
        )
    return Splits(audit=audit, skipped=skipped_table, **tables)


def write_splits(splits: Splits, paths: dict[str, str | os.PathLike]) -> None:
    """Write ``train``, ``val``, ``test``, ``audit`` and ``skipped`` to the files in ``paths``."""
    for split in SPLITS:
        write_csv(splits.table(split), paths[split])
    write_csv(splits.audit, paths["audit"])
    write_csv(splits.skipped, paths["skipped"])


def _load(csv_path, data_root, dataset_dir, settings: PreprocessSettings, skipped) -> pd.DataFrame:
    frame = read_chexpert_csv(csv_path, tuple(settings.diseases))
    _refuse_duplicates(frame, csv_path)
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
        kept = _check_images(kept, csv_path, data_root, settings, skipped)
    return kept


def _image_paths(paths: pd.Series, data_root: Path, dataset_dir: str) -> pd.Series:
    def resolve(value: str) -> str:
        for prefix in PATH_PREFIXES:
            if value.startswith(prefix):
                return str(data_root / dataset_dir / value[len(prefix) :])
        return str(data_root / value)

    return paths.map(resolve)


def _refuse_duplicates(frame: pd.DataFrame, csv_path) -> None:
    repeated = frame["Path"].duplicated(keep=False)
    if repeated.any():
        lines = frame.loc[repeated, "csv_line"].tolist()
        raise InputError(
            f"{int(frame['Path'].duplicated().sum())} image path(s) appear more than once, "
            f"e.g. {frame.at[repeated.idxmax(), 'Path']!r} on lines {lines[:2]}",
            where=str(csv_path),
            fix="keep one row per image: a repeated image would count twice in training and AUC.",
        )


def image_problem(path: str) -> str | None:
    """Why the image at ``path`` cannot be used (missing, unreadable, truncated), or None."""
    if not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated JPEG fails here, not at its header
    except (OSError, SyntaxError, ValueError) as err:
        return f"unreadable ({err})"
    return None


def _check_images(frame, csv_path, data_root, settings: PreprocessSettings, skipped):
    with ThreadPoolExecutor(max(1, settings.workers)) as pool:
        problems = pd.Series(list(pool.map(image_problem, frame["image"])), index=frame.index)
    bad = problems.notna()
    if not bad.any():
        return frame
    first = bad.idxmax()
    if settings.on_bad_image == "error":
        raise InputError(
            f"{int(bad.sum())} of {len(frame)} image(s) cannot be used, the first "
            f"{frame.at[first, 'image']!r} (Path {frame.at[first, 'Path']!r}): "
            f"{problems[first]}",
            where=f"{csv_path}, line {frame.at[first, 'csv_line']}",
            fix=f"if missing, set data_root (now {str(data_root)!r}) to the folder that holds "
            "the dataset folder; to leave bad images out, set on_bad_image: skip (they are "
            "listed in results/data/skipped_images.csv).",
        )
    log.warning(
        "%s: skipping %d bad image(s), e.g. %s", csv_path, int(bad.sum()), frame.at[first, "image"]
    )
    skipped.append(
        frame.loc[bad].assign(
            csv=str(csv_path), line=frame.loc[bad, "csv_line"], reason=problems[bad]
        )
    )
    return frame[~bad].reset_index(drop=True)


#: CheXpert's demographic and acquisition columns, under the names the subgroup table gives
#: them (deepauc.evaluation.subgroups); a CSV without one has no such column there.
SUBGROUP_COLUMNS = {"Sex": "sex", "Age": "age", "AP/PA": "projection"}


def image_groups(
    csv_path: str | os.PathLike,
    data_root: str | os.PathLike,
    dataset_dir: str,
    diseases: tuple[str, ...],
) -> pd.DataFrame:
    """Per image of a CheXpert CSV (its path as the split tables name it): the columns of
    :data:`SUBGROUP_COLUMNS` it has. A table of its own beside the splits, so that adding it
    to a finished run retrains nothing."""
    frame = read_chexpert_csv(csv_path, diseases)
    table = pd.DataFrame({"image": _image_paths(frame["Path"], Path(data_root), dataset_dir)})
    for column, name in SUBGROUP_COLUMNS.items():
        if column in frame:
            table[name] = frame[column].to_numpy()
    return table


def _label_table(raw: pd.DataFrame, settings: PreprocessSettings) -> pd.DataFrame:
    table = raw[["image", "patient", "study", "view"]].copy()
    for disease in settings.diseases:
        table[disease] = apply_policy(raw[disease], policy_for(disease, settings.uncertainty))
    return table


def _require_both_classes(audit: pd.DataFrame, splits: tuple[str, ...], test_csv) -> None:
    scored = audit[audit["split"].isin(splits)]
    lacking = scored[(scored["positive"] == 0) | (scored["negative"] == 0)]
    if lacking.empty:
        return
    # The test CSV first: it is given, while a val problem may go with a different split.
    row = lacking.sort_values("split", key=lambda split: split != "test", kind="stable").iloc[0]
    problem = (
        f"split {row['split']!r} has {row['positive']} positive and {row['negative']} "
        f"negative label(s) for {row['disease']!r}: its AUC is undefined"
    )
    if row["split"] == "test":  # the test CSV as given: no split setting changes it
        raise InputError(
            problem,
            where=f"test split ({test_csv}, config key test_csv)",
            fix=f"point test_csv at a CSV with both positive and negative images of "
            f"{row['disease']!r} (CheXpert's valid.csv has both for the five default diseases), "
            "or drop that disease from `diseases`.",
        )
    raise InputError(
        problem,
        where="val split (patients drawn from the training CSV)",
        fix="use more training data or a larger split.val_fraction (or another split.seed), "
        "or drop that disease from `diseases`.",
    )
