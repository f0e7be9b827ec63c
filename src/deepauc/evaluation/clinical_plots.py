"""Figures of what a clinician reads: test images with calibrated probabilities, reliability
diagrams (calibration) and subgroup AUCs."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from deepauc.data.examples import short_labels  # noqa: E402
from deepauc.evaluation.calibration import (  # noqa: E402
    ECE_BINS,
    PROBABILITY,
    expected_calibration_error,
    reliability_bins,
    sigmoid,
)
from deepauc.evaluation.plots import save_figure  # noqa: E402
from deepauc.evaluation.subgroups import MIN_GROUP_CLASS  # noqa: E402
from deepauc.methods import style  # noqa: E402


def plot_reliability(
    tables: dict[str, pd.DataFrame],
    predictor: str,
    paths: list,
    dpi: int = 200,
    scores_are_logits: bool = True,
) -> None:
    """Per disease, the test split's reliability diagram of ``predictor`` for each method
    (``tables``: method -> test table): observed positive rate against mean probability in
    :data:`ECE_BINS` equal-width bins, calibrated (solid, marker size by count) and the sigmoid
    of the raw logit (dotted), with each curve's ECE in the legend."""
    diseases = list(dict.fromkeys(d for t in tables.values() for d in t["disease"]))
    fig, axes = plt.subplots(
        1, len(diseases), figsize=(3.3 * len(diseases), 3.9), squeeze=False, sharey=True
    )
    for ax, disease in zip(axes[0], diseases, strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.7, ls=":")
        for method, table in tables.items():
            rows = table[table["disease"] == disease]
            y = rows["y_true"].to_numpy()
            color = style(method).color
            curves = [(rows[PROBABILITY].to_numpy(), "-", "calibrated")]
            if scores_are_logits:
                curves.append((sigmoid(rows["score"].to_numpy()), ":", "raw"))
            for p, line, what in curves:
                bins = reliability_bins(y, p)
                ece = expected_calibration_error(y, p)
                ax.plot(
                    bins["mean_probability"],
                    bins["observed"],
                    ls=line,
                    color=color,
                    lw=1.4 if line == "-" else 0.9,
                    label=f"{style(method).label} {what}: ECE {ece:.3f}",
                )
                if line == "-":
                    ax.scatter(
                        bins["mean_probability"],
                        bins["observed"],
                        s=8 + 60 * bins["n"] / max(1, len(y)),
                        color=color,
                        zorder=3,
                    )
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", title=disease)
        ax.grid(alpha=0.3)
        # below the panel: a curve may run anywhere in it
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    axes[0][0].set_ylabel("observed positive rate")
    fig.suptitle(
        f"{predictor}: calibration on the test split (Platt scaling fitted on val; "
        f"{ECE_BINS} equal-width bins, marker size: share of images)",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, paths, dpi)


def plot_subgroups(subgroups: pd.DataFrame, predictor: str, paths: list, dpi: int = 200) -> None:
    """Test AUC of ``predictor`` per subgroup (``subgroups.csv``): one panel per method and
    attribute, diseases along x, one colour per group, 95% intervals as whiskers. Groups with
    fewer than :data:`MIN_GROUP_CLASS` positives or negatives are hollow (``small``)."""
    rows = subgroups[subgroups["architecture"] == predictor]
    methods = list(dict.fromkeys(rows["method"]))
    attributes = list(dict.fromkeys(rows["attribute"]))
    if rows.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no subgroup columns (sex, age, AP/PA) in the split tables", ha="center")
        save_figure(fig, paths, dpi)
        return
    diseases = list(dict.fromkeys(rows["disease"]))
    fig, axes = plt.subplots(
        len(methods),
        len(attributes),
        figsize=(1.2 + 1.3 * len(diseases) * len(attributes), 3.4 * len(methods) + 0.6),
        squeeze=False,
        sharey=True,
    )
    colors = plt.get_cmap("tab10").colors
    for i, method in enumerate(methods):
        for k, attribute in enumerate(attributes):
            ax = axes[i][k]
            part = rows[(rows["method"] == method) & (rows["attribute"] == attribute)]
            groups = list(dict.fromkeys(part["group"]))
            width = 0.8 / max(1, len(groups))
            for g, group in enumerate(groups):
                mine = part[part["group"] == group].set_index("disease").reindex(diseases)
                x = np.arange(len(diseases)) - 0.4 + width * (g + 0.5)
                small = mine["small"].fillna(True).astype(bool).to_numpy()
                err = np.vstack([mine["auc"] - mine["auc_low"], mine["auc_high"] - mine["auc"]])
                color = colors[g % len(colors)]
                ax.errorbar(x, mine["auc"], yerr=np.abs(err), fmt="none", ecolor=color, lw=1)
                ax.scatter(x[~small], mine["auc"][~small], color=color, s=22)
                ax.scatter(x[small], mine["auc"][small], facecolor="white", edgecolor=color, s=22)
                noted = "note" in part and bool(
                    part.loc[part["group"] == group, "note"].fillna("").iloc[0]
                )
                label = f"{group}*" if noted else group
                ax.scatter([], [], color=color, s=22, label=label)  # its legend entry
            gaps = part.drop_duplicates("disease")["largest_gap"]
            gap = f"largest gap, mean of diseases: {gaps.mean():.3f}" if gaps.notna().any() else ""
            ax.set_title(f"{style(method).label} by {attribute}\n{gap}", fontsize=8)
            ax.set_xticks(range(len(diseases)), diseases, rotation=30, ha="right", fontsize=7)
            ax.grid(alpha=0.3, axis="y")
            ax.legend(
                fontsize=7,
                frameon=False,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.32),
                ncol=len(groups),
            )
        axes[i][0].set_ylabel("test ROC-AUC")
    marked = rows["note"].fillna("").astype(bool).any() if "note" in rows else False
    fig.suptitle(
        f"{predictor}: test ROC-AUC by subgroup\n(hollow: fewer than {MIN_GROUP_CLASS} "
        "positives or negatives, interval not comparable"
        + (";\n*: value not recorded or uncommon, left out of the gap" if marked else "")
        + ")",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, paths, dpi)


def showcase_picks(table: pd.DataFrame, n_images: int = 12, seed: int = 0) -> list[str]:
    """The showcase's test images, drawn at random: about three quarters with a finding, the
    rest without (the saliency figures show the first of the same draw)."""
    truth = table.pivot(index="image", columns="disease", values="y_true")
    rng = np.random.default_rng(seed)
    with_finding = truth.index[(truth == 1).any(axis=1)]
    without = truth.index[~(truth == 1).any(axis=1)]
    n_without = min(len(without), max(1, n_images // 4))
    return list(rng.permutation(with_finding)[: n_images - n_without]) + list(
        rng.permutation(without)[:n_without]
    )


def plot_showcase(
    table: pd.DataFrame,
    paths: list,
    n_images: int = 12,
    seed: int = 0,
    dpi: int = 200,
    model: str = "",
) -> None:
    """Test images with the top predicted labels and their calibrated probabilities (the
    ``probability`` column; a table without one shows its logits, said so), the ground truth,
    and the ``model`` that made them."""
    value = "probability" if "probability" in table else "score"
    wide = table.pivot(index="image", columns="disease", values=value)
    truth = table.pivot(index="image", columns="disease", values="y_true")
    picks = showcase_picks(table, n_images, seed)
    columns = min(4, len(picks))
    rows = int(np.ceil(len(picks) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.7 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), picks, strict=False):
        ax.imshow(np.asarray(Image.open(image).convert("L")), cmap="gray")
        top = wide.loc[image].sort_values(ascending=False).head(2)
        positives = [d for d in truth.columns if truth.at[image, d] == 1]
        ax.set_title(
            "Top: "
            + ", ".join(f"{short_labels([d])} {v:.2f}" for d, v in top.items())
            + "\nGT: "
            + short_labels(positives),
            fontsize=8,
        )
    shown = "calibrated probabilities" if value == "probability" else "logits"
    made_by = f" of {model}" if model else ""
    fig.suptitle(f"Test images: top-2 {shown}{made_by} and ground truth (GT)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, paths, dpi)
