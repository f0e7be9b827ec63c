"""When a number means little, said beside it.

Two things make a result weak however it is computed: a split with few cases of a class (an AUC
over 7 positives has a confidence interval spanning most of [0, 1], and a val AUC over them
picks models by chance), and a warm-up that never learned (its best val evaluation is step 0,
before any training: every fine-tune of that architecture starts from an untrained network).
Both are warned about in the job logs and marked in ``results/diagnostics.csv`` and in the
``caution`` column of ``results/summary.csv``; an empty caution means none applies.
"""

import pandas as pd

from deepauc.stats import MEAN

#: A split with fewer positives (or negatives) than this for a disease is marked.
MIN_CASES = 10


def few_cases(split: str, positive: int, negative: int) -> str:
    """The caution for a split's class counts of one disease ('' when there are enough)."""
    if min(positive, negative) >= MIN_CASES:
        return ""
    kind, count = ("positives", positive) if positive <= negative else ("negatives", negative)
    return f"only {count} {split} {kind}"


def untrained_warmup(best_step: int, seed: int | None = None) -> str:
    """The caution for a warm-up whose best val evaluation is ``best_step`` ('' unless 0)."""
    if int(best_step) != 0:
        return ""
    which = f"seed {seed}'s warm-up" if seed is not None else "the warm-up"
    return f"{which} never learned (best val AUC at step 0)"


def split_cautions(audit: pd.DataFrame, split: str) -> dict[str, str]:
    """Per disease, the few-cases caution of ``split`` in a label audit (label_audit.csv)."""
    rows = audit[audit["split"] == split]
    return {
        row.disease: few_cases(split, int(row.positive), int(row.negative))
        for row in rows.itertuples()
    }


def join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def summary_cautions(
    summary: pd.DataFrame,
    audit: pd.DataFrame,
    warmup_steps: dict[str, dict[int, int]],
    members: dict[str, list[str]],
) -> pd.Series:
    """The ``caution`` of each summary row: few test or val cases of its disease, and warm-ups
    of its architecture (or of an ensemble's members) that never learned. A ``mean`` row names
    the diseases whose rows carry a caution. ``warmup_steps`` maps each architecture to the best
    val step of each seed's warm-up; ``members`` each ensemble to its architectures."""
    val = split_cautions(audit, "val")

    def warmups(predictor: str) -> str:
        archs = members.get(predictor, [predictor])
        notes = []
        for arch in archs:
            steps = warmup_steps.get(arch, {})
            seeds = [seed for seed, step in sorted(steps.items()) if int(step) == 0]
            if not seeds:
                continue
            prefix = f"{arch}: " if predictor in members else ""
            single = len(steps) == 1
            notes += [prefix + untrained_warmup(0, None if single else seed) for seed in seeds]
        return join(*notes)

    data, cautions = {}, {}
    for row in summary.itertuples():
        if row.disease != MEAN:
            test = few_cases("test", int(row.n_pos), int(row.n_neg))
            data[row.Index] = join(test, val.get(row.disease, ""))
    for row in summary.itertuples():
        if row.disease != MEAN:
            cautions[row.Index] = join(data[row.Index], warmups(row.architecture))
            continue
        flagged = [
            other.disease
            for other in summary.itertuples()
            if data.get(other.Index)
            and (other.architecture, other.method) == (row.architecture, row.method)
        ]
        few = f"includes {', '.join(flagged)}, with few cases" if flagged else ""
        cautions[row.Index] = join(warmups(row.architecture), few)
    return pd.Series(cautions).reindex(summary.index).fillna("")
