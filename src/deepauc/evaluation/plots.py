"""Figures. Each function takes tables and writes a finished figure atomically."""

import os
from textwrap import fill

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.legend_handler import HandlerTuple  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from deepauc.atomic import atomic_path  # noqa: E402
from deepauc.evaluation.caution import PARTLY, UNTRAINED  # noqa: E402
from deepauc.evaluation.stats import MEAN  # noqa: E402
from deepauc.evaluation.summary import (  # noqa: E402
    COMPARISONS,
    VS_CONTROL,
    VS_WARMUP,
    image_rows,
)
from deepauc.methods import CONTROL, METHODS, WARMUP, style  # noqa: E402


def save_figure(fig, paths: list[str | os.PathLike], dpi: int = 200) -> None:
    """Write ``fig`` to each path (format from the suffix), atomically, then close it."""
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


#: What each comparison of comparison.csv subtracts, under its label in the AUC figure, so that
#: the two rows of differences cannot be read one for the other.
COMPARISON_EXPLAINED = {
    VS_CONTROL: "method minus the CE fine-tune from the same warm-up (same epochs, sampler and "
    "rate grid)",
    VS_WARMUP: "method minus the warm-up it started from (the fine-tune's epochs on top)",
}
#: Short names of the subtracted arm, for axis labels.
ARM_NAMES = {WARMUP: "warm-up", CONTROL: "CE"}

#: How a row's ``trained`` mark draws it: a fine-tune that did not train is hollow (it is the
#: warm-up under another name), one that did not on some seeds or members half-filled/hatched.
_BAR_LOOKS = {
    UNTRAINED: {"fill": False, "hatch": None},
    PARTLY: {"fill": False, "hatch": "////"},
}
_MARKER_FILL = {UNTRAINED: "none", PARTLY: "left"}


def plot_auc_by_architecture(
    summary: pd.DataFrame,
    paths: list,
    dpi: int = 200,
    comparison: pd.DataFrame | None = None,
) -> None:
    """Per disease (and the mean), test AUC of each architecture and ensemble: the warm-up and
    the fine-tune methods side by side (in the registry's order), 95% bootstrap intervals as
    whiskers. With ``comparison`` (comparison.csv), one row of panels per comparison below: the
    paired AUC difference and its 95% interval, each row titled with its comparison's label.
    Rows whose fine-tunes did not train (column ``trained``) are drawn hollow, those that did
    not on some seeds or ensemble members hatched (bars) or half-filled (differences)."""
    summary = image_rows(summary)
    present = set(summary["method"])
    methods = [m for m in [WARMUP, *METHODS] if m in present]
    diseases = list(dict.fromkeys(summary["disease"]))
    predictors = list(dict.fromkeys(summary["architecture"]))
    labels = (
        [] if comparison is None else [c for c in COMPARISONS if c in set(comparison.comparison)]
    )
    fig = plt.figure(
        figsize=(2.4 + 0.6 * len(predictors) * len(diseases), 4.0 + 2.9 * len(labels)),
        layout="constrained",
    )
    rows = np.atleast_1d(
        fig.subfigures(1 + len(labels), 1, height_ratios=[1.35] + [1] * len(labels))
    )
    marks = _marks(summary)
    _auc_row(rows[0], summary, methods, diseases, predictors, marks)
    for row, label in zip(rows[1:], labels, strict=True):
        _delta_row(row, comparison[comparison["comparison"] == label], label, diseases, predictors)
    legend = [(Patch(color=style(m).color), style(m).label) for m in methods]
    shown = set(marks.values()) | (
        set(comparison["trained"].fillna(""))
        if comparison is not None and "trained" in comparison
        else set()
    )
    # Bars and difference markers of a fine-tune that did not train share one legend entry.
    if UNTRAINED in shown:
        hollow = Patch(facecolor="white", edgecolor="black")
        legend.append(((hollow, _marker_proxy("none")), "did not train"))
    if PARTLY in shown:
        hatched = Patch(facecolor="white", edgecolor="black", hatch="////")
        legend.append(((hatched, _marker_proxy("left")), "did not train on some seeds or members"))
    fig.legend(
        [handle for handle, _ in legend],
        [text for _, text in legend],
        handler_map={tuple: HandlerTuple(ndivide=None)},
        loc="outside lower center",
        ncol=min(len(legend), 4),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("Test ROC-AUC by architecture, and paired differences", fontsize=12)
    save_figure(fig, paths, dpi)


def _marker_proxy(fillstyle: str) -> Line2D:
    return Line2D(
        [],
        [],
        marker="o",
        ls="none",
        color="black",
        fillstyle=fillstyle,
        ms=6,
        markerfacecoloralt="white",
    )


def _marks(table: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(architecture, method, disease) -> the row's ``trained`` mark ('' where unknown)."""
    if "trained" not in table:
        return {}
    keys = zip(table["architecture"], table["method"], table["disease"], strict=True)
    return dict(zip(keys, table["trained"].fillna("").astype(str), strict=True))


def _offsets(count: int) -> tuple[np.ndarray, float]:
    width = 0.8 / count
    return (np.arange(count) - (count - 1) / 2) * width, width


def _predictor_axis(ax, disease: str, predictors: list[str]) -> None:
    ax.set_title("Mean" if disease == MEAN else disease, fontsize=10)
    ax.set_xticks(np.arange(len(predictors)))
    ax.set_xticklabels(predictors, rotation=45, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _auc_row(subfig, summary, methods, diseases, predictors, marks) -> None:
    axes = np.atleast_1d(subfig.subplots(1, len(diseases), sharey=True))
    rows = summary.set_index(["architecture", "method", "disease"])
    offsets, width = _offsets(len(methods))
    for ax, disease in zip(axes, diseases, strict=True):
        for offset, method in zip(offsets, methods, strict=True):
            color = style(method).color
            for i, predictor in enumerate(predictors):
                key = (predictor, method, disease)
                if key not in rows.index:
                    continue
                row = rows.loc[key]
                look = _BAR_LOOKS.get(marks.get(key, ""), {"fill": True, "hatch": None})
                ax.bar(
                    i + offset,
                    row["auc"],
                    width,
                    color=color,
                    edgecolor=color,
                    linewidth=1.0,
                    **look,
                )
                ax.errorbar(
                    i + offset,
                    row["auc"],
                    yerr=[[row["auc"] - row["auc_low"]], [row["auc_high"] - row["auc"]]],
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.8,
                    capsize=2,
                )
            if method == WARMUP:  # the baseline every fine-tune starts from, across its group
                for i, predictor in enumerate(predictors):
                    if (predictor, WARMUP, disease) in rows.index:
                        base = rows.loc[(predictor, WARMUP, disease), "auc"]
                        ax.hlines(base, i - 0.45, i + 0.45, colors="#555555", lw=0.9, ls="--")
        _predictor_axis(ax, disease, predictors)
    axes[0].set_ylabel("Test ROC-AUC (95% CI)")
    low_edge = np.nanmin(summary.loc[summary["method"].isin(methods), "auc_low"])
    axes[0].set_ylim(max(0.0, np.floor(low_edge * 20) / 20 - 0.05), 1.0)
    subfig.suptitle(
        "Test ROC-AUC; whiskers: 95% patient-bootstrap intervals; dashed: the warm-up's AUC",
        fontsize=10,
        x=0.01,
        ha="left",
    )


def _delta_row(subfig, rows: pd.DataFrame, label: str, diseases, predictors) -> None:
    axes = np.atleast_1d(subfig.subplots(1, len(diseases), sharey=True))
    methods = [m for m in METHODS if m in set(rows["method"])]
    offsets, _ = _offsets(len(methods))
    indexed = rows.set_index(["architecture", "method", "disease"])
    marks = _marks(rows)
    for ax, disease in zip(axes, diseases, strict=True):
        ax.axhline(0.0, color="black", lw=0.7)
        for offset, method in zip(offsets, methods, strict=True):
            color = style(method).color
            for i, predictor in enumerate(predictors):
                key = (predictor, method, disease)
                if key not in indexed.index:
                    continue
                row = indexed.loc[key]
                ax.errorbar(
                    i + offset,
                    row["delta"],
                    yerr=[[row["delta"] - row["delta_low"]], [row["delta_high"] - row["delta"]]],
                    fmt="none",
                    ecolor=color,
                    elinewidth=1.0,
                    capsize=2,
                )
                ax.plot(
                    i + offset,
                    row["delta"],
                    marker="o",
                    ls="none",
                    ms=6,
                    color=color,
                    markerfacecoloralt="white",
                    fillstyle=_MARKER_FILL.get(marks.get(key, ""), "full"),
                )
                ax.annotate(
                    _significance(row),
                    (i + offset, row["delta_high"]),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=5.5,
                    color=color,
                )
        _predictor_axis(ax, disease, predictors)
    if len(rows):  # room above the highest whisker for the q marks (the axes share y)
        low, high = np.nanmin(rows["delta_low"]), np.nanmax(rows["delta_high"])
        span = max(high - low, 1e-3)
        axes[0].set_ylim(min(low, 0) - 0.1 * span, max(high, 0) + 0.55 * span)
    control = rows["control"].iloc[0] if len(rows) else ""
    axes[0].set_ylabel(f"AUC minus {ARM_NAMES.get(control, control)}\n(95% CI)")
    mean_p = rows.loc[rows["disease"] == MEAN, "p_resampling"]
    how = f"mean: {mean_p.iloc[0]} bootstrap" if len(mean_p) else "mean: bootstrap"
    explained = (
        f"{COMPARISON_EXPLAINED[label]}. Whiskers: 95% CI (per disease DeLong; {how}). "
        "Above each: the Benjamini-Hochberg q of a disease's difference (* below 0.05), the "
        "bootstrap p of the mean's"
    )
    width = int(subfig.get_figure(root=True).get_figwidth() * 13)  # about 13 characters an inch
    subfig.suptitle(f"{label}\n{fill(explained, width)}", fontsize=10, x=0.01, ha="left")


def _significance(row) -> str:
    """A difference's mark: its BH q per disease, its p for the mean (no q: one test each)."""
    q = row.get("q_value", float("nan"))
    if pd.notna(q):
        return f"q {q:.2f}" + ("*" if q < 0.05 else "")
    p = row.get("p_value", float("nan"))
    return f"p {p:.2f}" + ("*" if p < 0.05 else "") if pd.notna(p) else ""


def plot_roc(
    tables: dict[tuple[str, str], pd.DataFrame],
    disease: str,
    paths: list,
    highlight: str = "ensemble",
    dpi: int = 200,
    low_fpr: float = 0.2,
) -> None:
    """ROC curves of one disease for every predictor and method, with the low false-positive
    region (where screening operates) enlarged on the right. Predictors are told apart by
    colour, methods by line style (the registry's); the legend, beside the panels, gives each
    curve's test AUC. ``highlight`` is drawn thicker."""
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    predictors = list(dict.fromkeys(p for p, _ in tables))
    palette = plt.get_cmap("tab10").colors
    colors = {p: palette[k % len(palette)] for k, p in enumerate(predictors)}
    for (predictor, method), table in tables.items():
        rows = table[table["disease"] == disease]
        if rows.empty or rows["y_true"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(rows["y_true"], rows["score"])
        strong = predictor == highlight
        line = {
            "color": colors[predictor],
            "lw": 2.0 if strong else 1.0,
            "alpha": 1.0 if strong else 0.7,
            "ls": style(method).linestyle,
        }
        area = roc_auc_score(rows["y_true"], rows["score"])
        label = f"{predictor}, {style(method).label}: AUC {area:.3f}"
        for ax in (full, zoom):
            ax.plot(fpr, tpr, label=label if ax is full else None, **line)
    full.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    full.axvspan(0, low_fpr, color="#fdd49e", alpha=0.25, lw=0)
    full.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    full.set_title(f"{disease}: ROC on the test split", fontsize=10)
    zoom.set(xlim=(0, low_fpr), ylim=(0, 1.01), xlabel="False positive rate")
    zoom.set_title(f"Low false-positive region (FPR <= {low_fpr:g})", fontsize=10)
    for ax in (full, zoom):
        ax.grid(alpha=0.3)
    # beside the panels, not over the curves
    fig.legend(fontsize=7, loc="outside right center", frameon=False)
    save_figure(fig, paths, dpi)


def plot_training_curves(
    warmup: dict[str, pd.DataFrame],
    finetune: dict[tuple[str, str, str], pd.DataFrame],
    architecture: str,
    paths: list,
    dpi: int = 200,
) -> None:
    """Per step: the warm-up's validation AUC and loss, then each disease's fine-tune (one line
    style per method, from the registry): validation AUC, training loss, and the spread of the
    val scores, where a collapse shows (evaluations flagged collapsed are crossed). ``warmup``
    maps a seed to its history; ``finetune`` maps (method, disease, seed) to the history of the
    chosen learning rate."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), layout="constrained")
    # Losses of other scales (AUCM, pAUC-DRO) on their own axis beside the BCE ones.
    other_losses = axes[2].twinx()
    for seed, history in warmup.items():
        axes[0].plot(history["step"], history["val_auc"], marker="o", label=f"val AUC, seed {seed}")
        axes[0].plot(
            history["step"],
            history["train_loss"],
            marker=".",
            ls=":",
            label=f"train loss, seed {seed}",
        )
    axes[0].set(title=f"{architecture}: warm-up (all diseases)", xlabel="step")
    diseases = list(dict.fromkeys(d for _, d, _ in finetune))
    colors = dict(zip(diseases, plt.get_cmap("tab10").colors, strict=False))
    first_seed = min(s for *_, s in finetune)
    for (method, disease, seed), history in finetune.items():
        line = {"ls": style(method).linestyle, "color": colors[disease]}
        label = f"{disease} {method}" if seed == first_seed else None
        axes[1].plot(history["step"], history["val_auc"], marker="o", label=label, **line)
        bce = METHODS[method].loss_name == "BCE"
        (axes[2] if bce else other_losses).plot(
            history["step"], history["train_loss"], marker="o" if bce else "s", ms=4, **line
        )
        if "score_std" in history:
            axes[3].plot(history["step"], history["score_std"], marker=".", **line)
            fell = history[history["collapsed"].astype(bool)]
            axes[3].scatter(fell["step"], fell["score_std"], marker="x", s=60, color="red")
    axes[1].set(title="fine-tune: validation AUC (step 0: the warm-up)", xlabel="step")
    shown = list(dict.fromkeys(m for m, _, _ in finetune))
    bce = [m for m in shown if METHODS[m].loss_name == "BCE"]
    others = [m for m in shown if m not in bce]
    axes[2].set(
        title="fine-tune: training loss (mean over the epoch)",
        xlabel="step",
        ylabel=("BCE (circles): " + ", ".join(bce)) if bce else "",
    )
    if others:
        other_losses.set_ylabel(
            ", ".join(f"{METHODS[m].loss_name}: {m}" for m in others) + " (squares)"
        )
    else:
        other_losses.set_axis_off()
    axes[3].set(title="fine-tune: spread of val scores (x: collapsed)", xlabel="step", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="val AUC; train loss (dotted)")
    axes[1].set(ylabel="val AUC")
    axes[3].set(ylabel="std of val scores")
    # below the panels, not over the curves
    axes[0].legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    axes[1].legend(
        fontsize=7, frameon=False, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15)
    )
    save_figure(fig, paths, dpi)
