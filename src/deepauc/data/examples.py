"""The label-examples figure: what each sign looks like, a row of positive images per disease."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from deepauc.atomic import atomic_path  # noqa: E402


def plot_label_examples(
    table: pd.DataFrame,
    diseases: list[str],
    out_path: str | os.PathLike,
    per_row: int = 6,
    seed: int = 0,
) -> None:
    """A grid of images: one row of positives per disease and one row with no finding.

    ``table`` is a split file (image, view and one 0/1 column per disease). Each tile is titled
    with the image's positive labels, so a reader can see what each sign looks like.
    """
    rng = np.random.default_rng(seed)
    frontal = table[table["view"] == "Frontal"] if "view" in table else table
    labels = frontal[diseases].fillna(0).astype(int)
    rows = [(d, frontal[labels[d] == 1]) for d in diseases]
    rows.append(("No finding", frontal[labels.sum(axis=1) == 0]))

    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.9 * per_row, 2.1 * len(rows)))
    axes = np.atleast_2d(axes)
    for r, (name, pool) in enumerate(rows):
        picks = pool.iloc[rng.permutation(len(pool))[:per_row]]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(name, fontsize=10, fontweight="bold")
            if c >= len(picks):
                continue
            row = picks.iloc[c]
            ax.imshow(
                np.asarray(Image.open(row["image"]).convert("L")), cmap="gray", vmin=0, vmax=255
            )
            positives = [d for d in diseases if labels.at[row.name, d] == 1]
            ax.set_title(short_labels(positives), fontsize=7)
    fig.suptitle(
        "Examples by label (frontal views; title: all positive labels of the image)", fontsize=11
    )
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=150)
    plt.close(fig)


def short_labels(positives: list[str]) -> str:
    """Positive labels in a tile's title, long names shortened."""
    if not positives:
        return "no finding"
    abbreviations = {
        "Pleural Effusion": "Effusion",
        "Cardiomegaly": "Cardiomeg.",
        "Consolidation": "Consol.",
    }
    return ", ".join(abbreviations.get(d, d) for d in positives)
