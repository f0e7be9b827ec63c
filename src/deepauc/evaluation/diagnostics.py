"""How a fine-tune is going, and whether it collapsed: measured on val at every evaluation.

A collapsing AUC method pulls every score toward one value; its val AUC then drifts toward 0.5
and a mean over diseases can hide it. Every evaluation row of a fine-tune history records the
spread of the positive and negative val scores, how many scores are distinct, the dual variables
and how far the backbone moved, and a row is flagged ``collapsed`` when the scores bunch up.
``results/diagnostics.csv`` has one row per fine-tune (:func:`diagnostics_row`).
"""

import math

import numpy as np
import pandas as pd

from deepauc.data.splits import few_cases
from deepauc.evaluation import caution
from deepauc.methods import dual_names
from deepauc.text import compared

#: A chosen fine-tune "did not train" when it kept step 0 (the warm-up model) or its backbone
#: moved by less than this, relative (``||w - w0|| / ||w0||``): its row then compares the
#: warm-up, not the method, with the others.
MIN_BACKBONE_DRIFT = 0.005

#: Collapsed: fewer than this share of the val scores are distinct ...
MIN_DISTINCT_SHARE = 0.5
#: ... or their spread (standard deviation of the probabilities) fell below this share of the
#: spread at step 0.
MIN_SPREAD_SHARE = 0.25

#: What identifies a fine-tune (its rates taken together).
KEY_COLUMNS = ("architecture", "seed", "method", "disease")


def diagnostics_columns() -> list[str]:
    """The columns of ``results/diagnostics.csv``: the registered methods' dual variables among
    them, so a method that names its own gets its columns."""
    return [
        *KEY_COLUMNS,
        "chosen_lr",
        "chosen_step",
        "val_auc_step0",
        "best_val_auc",
        "collapsed",
        "collapsed_rates",
        "rates_tried",
        *dual_names(),  # the final dual variables, as the methods name them
        "backbone_drift",
        "trained",
        "val_pos",
        "warmup_best_step",
        "caution",
    ]


def tied_scores(scores: np.ndarray) -> int:
    """Scores (images, outputs) that equal another image's score of the same output."""
    return int(sum(len(column) - len(np.unique(column)) for column in scores.T))


def score_diagnostics(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mean and spread of the positive and negative val scores of one output, their spread and
    distinct share overall; images whose label is ignored are left out.

    On the scale the AUC losses work on, the sigmoid probability (so ``pos_mean`` and
    ``neg_mean`` compare with AUCMLoss's ``a`` and ``b``): a loss that pulls every probability to
    one value shows here even while the logits still rank. ``distinct_share`` counts distinct
    fp32 probabilities, what an AUC computed on sigmoid outputs would see.
    """
    known = ~np.isnan(targets)
    values = 1.0 / (1.0 + np.exp(-logits[known].astype(np.float64)))
    labels = targets[known]
    positive, negative = values[labels == 1], values[labels == 0]
    distinct = len(np.unique(values.astype(np.float32)))
    return {
        "pos_mean": _mean(positive),
        "pos_std": _std(positive),
        "neg_mean": _mean(negative),
        "neg_std": _std(negative),
        "score_std": _std(values),
        "distinct_scores": distinct,
        "distinct_share": distinct / max(len(values), 1),
    }


def is_collapsed(row: dict, start: dict) -> bool:
    """Whether the val scores of ``row`` have bunched up, against those at step 0."""
    if row["distinct_share"] < MIN_DISTINCT_SHARE:
        return True
    return bool(start["score_std"] > 0 and row["score_std"] < MIN_SPREAD_SHARE * start["score_std"])


def backbone_drift(weights: list, start: list) -> float:
    """||w - w0|| / ||w0|| over the backbone's parameters (lists of arrays or tensors)."""
    moved = sum(float(((w - w0) ** 2).sum()) for w, w0 in zip(weights, start, strict=True))
    size = sum(float((w0**2).sum()) for w0 in start)
    return math.sqrt(moved / size) if size else float("nan")


def best_row(history: pd.DataFrame) -> pd.Series:
    """The evaluation the job kept: the first with the highest val AUC."""
    return history.loc[history["val_auc"].idxmax()]


def warmup_best_steps(keys, histories) -> dict[str, dict[int, int]]:
    """Per architecture and seed (``keys``: (architecture, seed) pairs), the step of the
    warm-up's best val evaluation (the one its model file keeps: the first with the highest val
    AUC), read from each one's ``warmup.history.csv`` (``histories``, in the same order)."""
    steps: dict[str, dict[int, int]] = {}
    for (arch, seed), path in zip(keys, histories, strict=True):
        history = pd.read_csv(path)
        best = int(best_row(history)["step"]) if history["val_auc"].notna().any() else 0
        steps.setdefault(arch, {})[int(seed)] = best
    return steps


def choose_rate(histories: dict[float, pd.DataFrame]) -> float:
    """The learning rate whose best val AUC is highest.

    Every rate's step 0 is the same model (the warm-up, with the same head), so its val AUC is
    one value for all of them: their step-0 scores differ only by evaluation jitter (GPU
    kernels, bf16), up to 3e-4. Each rate is therefore ranked on the better of the common step
    0 (the highest of theirs) and its own best evaluation after step 0; rates that tie there
    (all kept step 0, typically) are ranked on their best evaluation after step 0, then the
    smaller rate wins."""
    start = max(float(h["val_auc"].iloc[0]) for h in histories.values())

    def rank(rate: float) -> tuple[float, float, float]:
        later = _best_after_start(histories[rate])
        return (max(start, later), later, -rate)

    return max(sorted(histories), key=rank)


def _best_after_start(history: pd.DataFrame) -> float:
    later = history["val_auc"].iloc[1:].dropna()
    return float(later.max()) if len(later) else float("-inf")


def did_train(chosen_step: int, drift: float) -> bool:
    """Whether a chosen fine-tune moved off the warm-up: not step 0, and its backbone drift (NaN
    where not recorded) at least :data:`MIN_BACKBONE_DRIFT`."""
    return chosen_step != 0 and not (drift < MIN_BACKBONE_DRIFT)


def diagnostics_row(key: dict, histories: dict[float, pd.DataFrame]) -> dict:
    """One fine-tune (``key``: architecture, seed, method, disease) from the histories of its
    learning rates: the chosen rate and evaluation, val AUC at step 0 and at best, whether the
    chosen run collapsed (at its last evaluation) and how many rates did, and the final duals."""
    rates = rate_table(histories)
    chosen = rates[rates["chosen"]].iloc[0]
    history = histories[chosen["lr"]]
    last = history.iloc[-1]
    kept = history[history["step"] == chosen["best_step"]].iloc[0]
    drift = float(kept.get("drift", float("nan")))
    return {
        **key,
        "chosen_lr": chosen["lr"],
        "chosen_step": int(chosen["best_step"]),
        "val_auc_step0": chosen["val_auc_step0"],
        "best_val_auc": chosen["best_val_auc"],
        "collapsed": "yes" if chosen["collapsed"] else "no",
        "collapsed_rates": int(rates["collapsed"].sum()),
        "rates_tried": len(rates),
        **{name: float(last.get(name, float("nan"))) for name in dual_names()},
        "backbone_drift": drift,
        "trained": "yes" if did_train(int(chosen["best_step"]), drift) else "no",
    }


def diagnostics_table(
    runs: dict[tuple, pd.DataFrame],
    audit: pd.DataFrame,
    warmup_steps: dict[str, dict[int, int]],
) -> pd.DataFrame:
    """``results/diagnostics.csv`` from every fine-tune run's history, keyed by (architecture,
    seed, method, disease, learning rate): one row per fine-tune, its rates taken together,
    with the val split's positives for the disease (``audit``: label_audit.csv), the best step
    of the warm-up it started from and what makes the row mean little
    (``deepauc.evaluation.caution``)."""
    grouped: dict[tuple, dict[float, pd.DataFrame]] = {}
    for (*key, rate), history in runs.items():
        grouped.setdefault(tuple(key), {})[float(rate)] = history
    val = audit[audit["split"] == "val"].set_index("disease")
    rows = []
    for key, histories in grouped.items():
        row = diagnostics_row(dict(zip(KEY_COLUMNS, key, strict=True)), histories)
        counts = val.loc[row["disease"]]
        warmup_step = warmup_steps.get(row["architecture"], {}).get(int(row["seed"]))
        row["val_pos"] = int(counts["positive"])
        row["warmup_best_step"] = warmup_step
        row["caution"] = caution.join(
            few_cases("val", int(counts["positive"]), int(counts["negative"])),
            "" if row["trained"] == "yes" else untrained_note(row),
            caution.untrained_warmup(warmup_step) if warmup_step is not None else "",
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=diagnostics_columns())


def untrained_note(row: dict) -> str:
    """Why a chosen fine-tune counts as not trained."""
    if int(row["chosen_step"]) == 0:
        return "did not train: kept step 0 (the warm-up model)"
    drift = compared(float(row["backbone_drift"]), "<", MIN_BACKBONE_DRIFT)
    return f"did not train: backbone drift {drift}"


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _std(values: np.ndarray) -> float:
    return float(values.std()) if len(values) else float("nan")


def chosen_rate(rates_csv) -> float:
    """The rate a ``{disease}.rates.csv`` (rule select_lr) marks as chosen."""
    rates = pd.read_csv(rates_csv)
    chosen = rates[rates["chosen"].astype(str).str.lower() == "true"]
    if len(chosen) != 1:
        raise ValueError(f"{rates_csv}: expected one chosen rate, found {len(chosen)}")
    return float(chosen["lr"].iloc[0])


def rate_table(
    histories: dict[float, pd.DataFrame], added_in_round: dict[float, int] | None = None
) -> pd.DataFrame:
    """Per learning rate tried, smallest first: the search round that added it (0: the grid,
    k: its k-th extension), its best val AUC and step, its best after step 0, val AUC at step
    0, whether it ended collapsed, and which rate was chosen (:func:`choose_rate`)."""
    chosen = choose_rate(histories)
    rounds = added_in_round or {}
    rows = []
    for rate in sorted(histories):
        history = histories[rate]
        best = best_row(history)
        rows.append(
            {
                "lr": rate,
                "added_in_round": int(rounds.get(rate, 0)),
                "best_val_auc": float(best["val_auc"]),
                "best_step": int(best["step"]),
                "best_val_auc_after_step0": _best_after_start(history),
                "val_auc_step0": float(history["val_auc"].iloc[0]),
                "collapsed": bool(history["collapsed"].iloc[-1])
                if "collapsed" in history
                else False,
                "chosen": rate == chosen,
            }
        )
    return pd.DataFrame(rows)
