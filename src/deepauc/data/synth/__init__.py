"""An embedded synthetic CheXpert: phantom radiographs with learnable, noisily labelled signs.

``generate_dataset(root, spec)`` writes ``<root>/CheXpert-v1.0-small/{train,valid}.csv`` in
CheXpert's exact format, the JPEGs they name, and ``synthetic_truth.csv`` with each image's latent
severities (what an oracle would know), so the rest of the pipeline cannot tell it from a real
download. Deterministic in ``spec.seed``: every image has its own seeded random stream.
"""

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from deepauc.atomic import atomic_path, write_csv
from deepauc.data.chexpert import HEADER
from deepauc.data.synth.cohort import CohortSpec, sample_cohort
from deepauc.data.synth.phantom import DISEASE_SIGNS, Study, render

__all__ = ["SynthSpec", "generate_dataset", "render_image"]

log = logging.getLogger(__name__)

DATASET_DIR = "CheXpert-v1.0-small"


@dataclass(frozen=True)
class SynthSpec(CohortSpec):
    """Cohort size plus image settings; see :class:`CohortSpec` for the cohort's fields."""

    image_size: tuple[int, int] = (160, 160)  # (height, width) in pixels
    jpeg_quality: int = 90


def render_image(row: pd.Series, spec: SynthSpec) -> np.ndarray:
    """Render one cohort row (see :func:`sample_cohort`) as a uint8 image, deterministically."""
    split_code = 0 if row["split"] == "train" else 1
    rng = np.random.default_rng(
        [
            spec.seed,
            2,
            split_code,
            int(row["patient_index"]),
            int(row["study_index"]),
            int(row["view_index"]),
        ]
    )
    study = Study(
        amplitude={d: float(row[f"amplitude:{d}"]) for d in DISEASE_SIGNS},
        frontal=bool(row["frontal"]),
        ap=bool(row["ap"]),
        devices=bool(row["devices"]),
        female=bool(row["female"]),
    )
    return render(study, tuple(spec.image_size), rng)


def generate_dataset(
    root: str | os.PathLike,
    spec: SynthSpec,
    dataset_dir: str = DATASET_DIR,
    workers: int = 1,
    saved_size: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Write the synthetic dataset under ``root`` and return its cohort table.

    Images are rendered at ``spec.image_size`` and saved at ``saved_size`` (height, width;
    default the same), resized bilinearly: a rehearsal at scale renders small (a render's cost
    grows with its pixels) and still writes, decodes and caches images of the size it tests.
    The CSVs are written last and atomically, so an interrupted run leaves no CSV behind and a
    rerun starts over.
    """
    dataset = Path(root) / dataset_dir
    cohort = sample_cohort(CohortSpec(**_cohort_fields(spec)), dataset_dir)
    jobs = [
        (Path(root) / path, row, spec, saved_size)
        for path, (_, row) in zip(cohort["Path"], cohort.iterrows(), strict=True)
    ]
    log.info(
        "rendering %d images at %s into %s with %d worker(s)",
        len(jobs),
        spec.image_size,
        dataset,
        workers,
    )
    chunk = max(1, len(jobs) // (workers * 8))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            done = pool.map(_write_image, jobs, chunksize=chunk)
            for _ in tqdm(done, total=len(jobs), desc="synthetic images", unit="img"):
                pass
    else:
        for job in tqdm(jobs, desc="synthetic images", unit="img"):
            _write_image(job)
    truth = cohort[["Path", "split"] + [c for c in cohort.columns if ":" in c]]
    write_csv(truth, dataset / "synthetic_truth.csv")
    for split in ("train", "valid"):
        part = cohort.loc[cohort["split"] == split, list(HEADER)]
        with atomic_path(dataset / f"{split}.csv") as tmp:
            # CheXpert writes labels as 1.0/0.0/-1.0 and leaves unmentioned ones blank.
            part.to_csv(tmp, index=False, float_format="%.1f")
    return cohort


def _cohort_fields(spec: SynthSpec) -> dict:
    return {k: v for k, v in asdict(spec).items() if k in CohortSpec.__dataclass_fields__}


def _write_image(job) -> None:
    path, row, spec, saved_size = job
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(render_image(row, spec))
    if saved_size is not None and tuple(saved_size) != tuple(spec.image_size):
        height, width = saved_size
        image = image.resize((width, height), Image.BILINEAR)
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=spec.jpeg_quality)
