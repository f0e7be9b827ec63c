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

#: Sunk: the mean val score of both classes within this of the sigmoid's floor (0) or ceiling
#: (1) ...
SIGMOID_EDGE = 0.02
#: ... and nearer that edge than this share of their distance from it at step 0 (a model that
#: started there, a rare disease's warm-up say, has not sunk).
SINK_SHARE = 0.25

#: A warm-up "barely ranks" a disease (the precondition of an AUC fine-tune, checked before the
#: fine-tunes run) when its val AUC is below this ...
WEAK_START_AUC = 0.65
#: ... or its val scores' spread (standard deviation of the probabilities) is below this: AUCM's
#: margin (1.0) is then a hundred times the gap it has to widen. Healthy warm-ups of the DAM
#: study started at 0.019 or more.
WEAK_START_SPREAD = 0.01

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
        "sunk",
        "sunk_rates",
        "kept_step0_rates",
        "rates_tried",
        *dual_names(),  # the final dual variables, as the methods name them
        "backbone_drift",
        "trained",
        "val_pos",
        "warmup_best_step",
        "score_std_step0",
        "weak_start",
        "failure",
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


def sunk(row: dict, start: dict) -> str:
    """``floor`` or ``ceiling`` where the val scores of ``row`` have sunk into the sigmoid's
    floor (both classes' mean probability below :data:`SIGMOID_EDGE`) or risen to its ceiling,
    having started well away from it (``start``: step 0's row); '' otherwise. There the
    gradient of a loss on probabilities vanishes, and the ranking that is left lives in the last
    bits of the scores."""
    means = [row.get("pos_mean", math.nan), row.get("neg_mean", math.nan)]
    before = [start.get("pos_mean", math.nan), start.get("neg_mean", math.nan)]
    if any(math.isnan(float(v)) for v in means + before):
        return ""
    if max(means) < SIGMOID_EDGE and max(means) < SINK_SHARE * max(before):
        return "floor"
    gap, gap_before = 1 - min(means), 1 - min(before)
    if gap < SIGMOID_EDGE and gap < SINK_SHARE * gap_before:
        return "ceiling"
    return ""


def weak_start(val_auc: float, score_std: float) -> str:
    """Why a starting model barely ranks a disease ('' when it does rank it): val AUC below
    :data:`WEAK_START_AUC` or a score spread below :data:`WEAK_START_SPREAD` (NaN, not
    recorded, is neither)."""
    reasons = []
    if val_auc < WEAK_START_AUC:
        reasons.append(f"val AUC {compared(val_auc, '<', WEAK_START_AUC)}")
    if score_std < WEAK_START_SPREAD:
        reasons.append(f"score spread {compared(score_std, '<', WEAK_START_SPREAD)}")
    return ", ".join(reasons)


def weak_warmup(best: pd.Series | dict, diseases: list[str]) -> dict[str, str]:
    """The diseases a warm-up barely ranks at its kept evaluation ``best`` (a history row with
    ``val_auc:<disease>`` and ``score_std:<disease>``, or ``val_auc`` alone for one disease),
    each with why (:func:`weak_start`); a value the row lacks is not judged."""
    alone = best.get("val_auc", math.nan) if len(diseases) == 1 else math.nan
    weak = {}
    for disease in diseases:
        # NaN (not recorded) compares False with either threshold: not judged
        why = weak_start(
            float(best.get(f"val_auc:{disease}", alone)),
            float(best.get(f"score_std:{disease}", math.nan)),
        )
        if why:
            weak[disease] = why
    return weak


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
        "sunk": chosen["sunk"] or "no",
        "sunk_rates": int((rates["sunk"] != "").sum()),
        "kept_step0_rates": int((rates["best_step"] == 0).sum()),
        "rates_tried": len(rates),
        **{name: float(last.get(name, float("nan"))) for name in dual_names()},
        "backbone_drift": drift,
        "trained": "yes" if did_train(int(chosen["best_step"]), drift) else "no",
        "score_std_step0": float(history["score_std"].iloc[0])
        if "score_std" in history
        else math.nan,
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
        weak = weak_start(float(row["val_auc_step0"]), float(row["score_std_step0"]))
        row["weak_start"] = "yes" if weak else "no"
        row["failure"] = failure_note(row)
        row["caution"] = caution.join(
            few_cases("val", int(counts["positive"]), int(counts["negative"])),
            "" if row["trained"] == "yes" else untrained_note(row),
            caution.untrained_warmup(warmup_step) if warmup_step is not None else "",
            f"started from a warm-up that barely ranks {row['disease']} ({weak})" if weak else "",
        )
        rows.append(row)
    table = pd.DataFrame(rows, columns=diagnostics_columns())
    return with_stuck_notes(table)


def failure_note(row: dict) -> str:
    """How a fine-tune failed at its rates, '' if it did not: the chosen run's scores sank
    into the sigmoid's floor or ceiling, or some rates' did; the chosen run collapsed, or some
    rates did. A mean over diseases can hide any of these; the summary names them."""
    tried = int(row["rates_tried"])
    notes = []
    sank, rates_sank = row["sunk"], int(row["sunk_rates"])
    if rates_sank:
        one = sank != "no" and rates_sank == 1
        where = "its chosen rate" if one else f"{rates_sank} of {tried} rates"
        edge = sank if sank != "no" else "floor or ceiling"
        notes.append(f"scores sank into the sigmoid's {edge} at {where}")
    collapsed = int(row["collapsed_rates"])
    if collapsed:
        one = row["collapsed"] == "yes" and collapsed == 1
        where = "its chosen rate" if one else f"{collapsed} of {tried} rates"
        notes.append(f"COLLAPSE at {where}")
    return "; ".join(notes)


def with_stuck_notes(table: pd.DataFrame) -> pd.DataFrame:
    """Add to ``failure`` (and ``caution``) of every fine-tune that kept step 0 at every rate
    it tried while the control (CE) of the same architecture, seed and disease trained: the
    method, not the start, held it there."""
    from deepauc.methods import CONTROL

    control = table[table["method"] == CONTROL].set_index(["architecture", "seed", "disease"])
    for index, row in table.iterrows():
        if row["method"] == CONTROL or row["kept_step0_rates"] < row["rates_tried"]:
            continue
        key = (row["architecture"], row["seed"], row["disease"])
        if key not in control.index or control.loc[key, "trained"] != "yes":
            continue
        every = (
            "its rate"
            if row["rates_tried"] == 1
            else f"every rate of its grid ({row['rates_tried']})"
        )
        note = f"kept step 0 at {every} while {CONTROL} trained"
        table.loc[index, "failure"] = caution.join(row["failure"], note)
    table["caution"] = [
        caution.join(note, failure)
        for note, failure in zip(table["caution"], table["failure"], strict=True)
    ]
    return table


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
                "sunk": sunk(history.iloc[-1].to_dict(), history.iloc[0].to_dict()),
                "chosen": rate == chosen,
            }
        )
    return pd.DataFrame(rows)
