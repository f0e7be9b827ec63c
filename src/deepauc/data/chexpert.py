"""The CheXpert CSV format: its columns, its label codes, and reading it strictly.

CheXpert's ``train.csv`` and ``valid.csv`` share a 19-column header. Labels are coded ``1.0``
(positive), ``0.0`` (negative), ``-1.0`` (uncertain) or blank (not mentioned in the report).
``Path`` starts with the dataset folder's name (``CheXpert-v1.0-small/`` for the downsampled
release, ``CheXpert-v1.0/`` for the full one), then ``{split}/patientNNNNN/studyK/viewJ_*.jpg``.
"""

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from deepauc.errors import InputError

META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
LABEL_COLUMNS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
HEADER = META_COLUMNS + LABEL_COLUMNS

#: Dataset folder names that may prefix ``Path``: the downsampled and the full-resolution release.
PATH_PREFIXES = ("CheXpert-v1.0-small/", "CheXpert-v1.0/")

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
_LABEL_CODES = {
    "1": POSITIVE,
    "1.0": POSITIVE,
    "0": NEGATIVE,
    "0.0": NEGATIVE,
    "-1": UNCERTAIN,
    "-1.0": UNCERTAIN,
    "": np.nan,
}
_PATIENT_STUDY = re.compile(r"(patient\d+)/(study\d+)/")

REQUIRED_COLUMNS = ("Path", "Frontal/Lateral")


def read_chexpert_csv(path: str | os.PathLike, label_columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a CheXpert CSV, checking the columns and label codes we rely on.

    Returns one row per image with the meta columns as strings and each of ``label_columns`` as
    float (1.0, 0.0, -1.0 or NaN for blank), plus ``patient`` and ``study`` parsed from ``Path``
    and ``csv_line``, the row's line number in the file.
    Raises :class:`InputError` naming the file, the CSV line and the column of any bad value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "file not found",
            where=str(path),
            fix="point data_root at the folder that holds the dataset folder "
            "(e.g. --config data_root=/data, with /data/CheXpert-v1.0-small/train.csv).",
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
        check_complete_rows(text, path)
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            f"not a readable CSV ({err})",
            where=str(path),
            fix="use the train.csv / valid.csv shipped with CheXpert, or a CSV in its format.",
        ) from err

    missing = [c for c in (*REQUIRED_COLUMNS, *label_columns) if c not in raw.columns]
    if missing:
        known = ", ".join(c for c in raw.columns if c in LABEL_COLUMNS) or "none"
        raise InputError(
            f"missing column(s) {', '.join(map(repr, missing))}; label columns present: {known}",
            where=str(path),
            fix="check the CSV header (CheXpert's 19 columns) and the `diseases` list in the "
            "config: each disease must be spelled as its CheXpert column.",
        )
    if raw.empty:
        raise InputError(
            "the CSV has a header but no rows",
            where=str(path),
            fix="copy or export the file again (it may have been cut short), or point the config "
            "(data_root, train_csv, test_csv) at the CSV that lists the images.",
        )

    frame = raw.copy()
    for column in label_columns:
        frame[column] = _decode_labels(raw[column], path, column)
    frame["patient"], frame["study"] = _patient_and_study(raw["Path"], path)
    frame["csv_line"] = frame.index + 2  # header is line 1; kept for error messages downstream
    return frame


def check_complete_rows(text: str, path: Path) -> None:
    """Refuse a CSV that a cut-short copy or download produced, before any row is parsed.

    pandas reads a row with missing trailing fields as blank labels: the labels would change
    silently. So every row must have the header's number of fields, the text may hold no NUL
    bytes (what a failed copy leaves), and a file that ends without a line break must not end in
    an empty field (a cut right after a comma). A file cut exactly at a line break is a valid,
    shorter CSV and cannot be told from one.
    """
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(
            "the file holds NUL bytes: a damaged or unfinished copy",
            where=f"{path}, line {line}",
            fix="copy or download the file again.",
        )
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return  # empty: read_csv says so
    records = [(reader.line_num, record) for record in reader if record]
    for position, (line, record) in enumerate(records):
        if len(record) == len(header):
            continue
        if position == len(records) - 1:
            problem, fix = ": it is the last row, so the file looks truncated", "."
        else:
            problem = ""
            fix = f"; if you edited it, give every row the header's {len(header)} columns."
        raise InputError(
            f"this row has {len(record)} fields where the header has {len(header)}{problem}",
            where=f"{path}, line {line}",
            fix="copy or download the file again" + fix,
        )
    if records and not text.endswith(("\n", "\r")) and records[-1][1][-1] == "":
        raise InputError(
            "the file ends in the middle of its last row (an empty last field and no line "
            "break): it looks truncated",
            where=f"{path}, line {records[-1][0]}",
            fix="copy or download the file again; if it is complete, end it with a line break.",
        )


def _decode_labels(values: pd.Series, path: Path, column: str) -> pd.Series:
    stripped = values.str.strip()
    decoded = stripped.map(_LABEL_CODES)
    bad = decoded.isna() & (stripped != "")
    if bad.any():
        first = bad.idxmax()
        raise InputError(
            f"column {column!r} holds {values[first]!r} "
            f"({int(bad.sum())} bad value(s) in this column)",
            where=f"{path}, line {first + 2}",
            fix="CheXpert labels are 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank.",
        )
    return decoded.astype(float)


def _patient_and_study(paths: pd.Series, csv_path: Path) -> tuple[pd.Series, pd.Series]:
    parts = paths.str.extract(_PATIENT_STUDY)
    unparsed = parts[0].isna()
    if unparsed.any():
        first = unparsed.idxmax()
        raise InputError(
            f"Path {paths[first]!r} has no patientNNNNN/studyK/ part "
            f"({int(unparsed.sum())} such row(s))",
            where=f"{csv_path}, line {first + 2}",
            fix="Path must look like "
            "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg.",
        )
    return parts[0], parts[0] + "/" + parts[1]


def slug(label: str) -> str:
    """A file-name-safe form of a label column: ``Pleural Effusion`` -> ``pleural_effusion``."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
