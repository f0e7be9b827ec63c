"""``results/verdict.md``: the write-up's question answered for this run, in plain words.

Does optimizing AUC directly beat cross-entropy here, and by how much? Per predictor (each
architecture and ensemble) and method: the mean test AUC difference against CE at equal compute
with its 95% interval and p (seeds and patients resampled), the seed-level t-interval where there
are several seeds, and the write-up's own comparison (against the warm-up, i.e. with the extra
fine-tune epochs) beside it. Then every condition found that weakens the answer: fine-tunes that
sank, collapsed or never trained, a warm-up that barely ranks a disease, few positives, one seed.
Written from ``comparison.csv``, ``diagnostics.csv`` and ``label_audit.csv`` alone, never by hand.
"""

import math

import pandas as pd

from deepauc.evaluation.caution import split_cautions
from deepauc.evaluation.diagnostics import WEAK_START_AUC, WEAK_START_SPREAD
from deepauc.evaluation.stats import MEAN
from deepauc.evaluation.summary import VS_CONTROL, VS_WARMUP
from deepauc.methods import CONTROL, style


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _interval(low: float, high: float) -> str:
    return f"[{_signed(low)}, {_signed(high)}]"


def answer(delta: float, low: float, high: float) -> str:
    """The plain-word reading of a difference and its 95% interval."""
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    if low > 0:
        return "ahead"
    if high < 0:
        return "behind"
    return "no difference this run can detect"


def _p(row) -> str:
    p = row.get("p_reported", "")
    p = "" if pd.isna(p) else str(p)
    error = row.get("p_mc_error", math.nan)
    if p and not pd.isna(error):
        p += f" (+-{error:.3f})"
    return p


def _seed_level(row) -> str:
    n = row.get("n_seeds", math.nan)
    if pd.isna(n) or int(n) < 2 or pd.isna(row.get("seed_delta_low", math.nan)):
        return ""
    return f"{_interval(row['seed_delta_low'], row['seed_delta_high'])}, p {row['seed_p']:.3f}"


def _label(method: str) -> str:
    return style(method).label.replace(" fine-tune", "")


def verdict(
    comparison: pd.DataFrame, diagnostics: pd.DataFrame, audit: pd.DataFrame, facts: dict
) -> str:
    """The verdict's Markdown. ``facts``: the run's ``architectures``, ``predictors`` (every
    architecture and ensemble, in the summary's order), ``seeds``, ``diseases``, ``methods``,
    ``image_size``, ``pretrained``, ``synthetic``, ``dataset``."""
    mean = comparison[comparison["disease"] == MEAN]
    control = mean[mean["comparison"] == VS_CONTROL].set_index(["architecture", "method"])
    warmup = mean[mean["comparison"] == VS_WARMUP].set_index(["architecture", "method"])
    methods = [m for m in facts["methods"] if m != CONTROL]
    seeds = len(facts["seeds"])
    lines = [
        "# The verdict: does AUC maximization beat cross-entropy in this run?",
        "",
        "Written by the deepauc pipeline from this run's `results/comparison.csv`, "
        "`diagnostics.csv` and `data/label_audit.csv`. Each method is compared with CE "
        "fine-tuned from the same warm-up with the same epochs, sampler, schedule and rate "
        "grid (equal compute, equal tuning effort), on the mean test AUC over the diseases; the "
        "interval is 95%, "
        f"from a bootstrap over {'training seeds, then ' if seeds > 1 else ''}test patients.",
        "",
        _setting(facts),
        "",
        "## The answer",
        "",
    ]
    for predictor in facts["predictors"]:
        lines += _answers(predictor, methods, control, warmup, seeds)
    lines += ["## Every number", ""]
    lines += _table(facts["predictors"], [*methods, CONTROL], control, warmup)
    lines += ["## What weakens this answer", ""]
    weaknesses = _weaknesses(diagnostics, audit, facts)
    lines += [f"- {w}" for w in weaknesses] or ["- Nothing this pipeline checks for was found."]
    lines += [
        "",
        "## What it cannot say",
        "",
        "- Anything about other data, image sizes, starting weights or architectures than this "
        "run's: the answer is this run's, at its settings.",
        "- Whether another rate grid, more epochs or another recipe would change it: every "
        "method had the same budget and the same size of grid, and that is all it had.",
        "",
    ]
    return "\n".join(lines)


def _setting(facts: dict) -> str:
    start = facts["pretrained"]
    start = (
        "from timm's ImageNet weights"
        if start is True
        else "from scratch"
        if start is False
        else f"from the starting weights in {start}"
    )
    data = "a synthetic cohort" if facts["synthetic"] else facts["dataset"]
    seeds = len(facts["seeds"])
    return (
        f"This run: {', '.join(facts['architectures'])} at {facts['image_size']} px, warm-ups "
        f"{start}; {seeds} seed{'s' if seeds != 1 else ''}; {len(facts['diseases'])} diseases "
        f"({', '.join(facts['diseases'])}); methods {', '.join(facts['methods'])}; data: {data}."
    )


def _answers(predictor, methods, control, warmup, seeds) -> list[str]:
    lines = []
    for method in methods:
        if (predictor, method) not in control.index:
            continue
        row = control.loc[(predictor, method)]
        reading = answer(row["delta"], row["delta_low"], row["delta_high"])
        text = (
            f"**{predictor}, {_label(method)}** ({seeds} seed{'s' if seeds != 1 else ''}): "
            f"{_label(method)} - CE = {_signed(row['delta'])} "
            f"{_interval(row['delta_low'], row['delta_high'])}, p {_p(row)}: "
        )
        text += {
            "ahead": f"{_label(method)} is ahead of CE at equal compute.",
            "behind": f"{_label(method)} is behind CE at equal compute.",
        }.get(reading, f"{reading} between {_label(method)} and CE at equal compute.")
        seed_level = _seed_level(row)
        if seed_level:
            text += f" The seeds alone (t-interval): {seed_level}."
        if (predictor, method) in warmup.index and (predictor, CONTROL) in warmup.index:
            gain, ce_gain = warmup.loc[(predictor, method)], warmup.loc[(predictor, CONTROL)]
            text += (
                f" Against the warm-up (the write-up's comparison: the fine-tune's extra epochs "
                f"included) {_label(method)} gains {_signed(gain['delta'])} "
                f"{_interval(gain['delta_low'], gain['delta_high'])}, and CE given the same "
                f"epochs {_signed(ce_gain['delta'])}."
            )
        trained = str(row.get("trained", "") or "")
        if trained == "no":
            text += " None of its fine-tunes trained: the row measures the warm-up against CE."
        elif trained == "partly":
            text += " Some of its fine-tunes did not train: the row partly measures the warm-up."
        lines += [text, ""]
    return lines


def _table(predictors, methods, control, warmup) -> list[str]:
    header = "| predictor | method | vs CE [95% CI] | p | seeds alone (t) | vs warm-up [95% CI] |"
    lines = [header, "|---|---|---|---|---|---|"]
    for predictor in predictors:
        for method in methods:
            vs_ce, vs_warm = "", ""
            p, seed_level = "", ""
            if (predictor, method) in control.index:
                row = control.loc[(predictor, method)]
                vs_ce = f"{_signed(row['delta'])} {_interval(row['delta_low'], row['delta_high'])}"
                p, seed_level = _p(row), _seed_level(row)
            if (predictor, method) in warmup.index:
                row = warmup.loc[(predictor, method)]
                vs_warm = (
                    f"{_signed(row['delta'])} {_interval(row['delta_low'], row['delta_high'])}"
                )
            if vs_ce or vs_warm:
                lines.append(
                    f"| {predictor} | {_label(method)} | {vs_ce} | {p} | {seed_level} | {vs_warm} |"
                )
    return [*lines, ""]


def _weaknesses(diagnostics: pd.DataFrame, audit: pd.DataFrame, facts: dict) -> list[str]:
    found = []
    if len(facts["seeds"]) == 1:
        found.append(
            "One seed: the intervals carry test-patient noise only, not training noise; a "
            "second seed can move a difference of this size. Run three or more "
            "(`seeds: [0, 1, 2]`)."
        )
    runs = diagnostics.groupby(["architecture", "method"], sort=False)
    failed = diagnostics["failure"].fillna("").astype(str) != ""
    for (arch, method), group in diagnostics[failed].groupby(
        ["architecture", "method"], sort=False
    ):
        found.append(
            f"{arch}, {_label(method)}: {len(group)} of {len(runs.get_group((arch, method)))} "
            f"fine-tunes failed ({', '.join(_kinds(group))}): {_diseases(group)}."
        )
    untrained = diagnostics["trained"].astype(str) == "no"
    for (arch, method), group in diagnostics[untrained].groupby(
        ["architecture", "method"], sort=False
    ):
        found.append(
            f"{arch}, {_label(method)}: {len(group)} of {len(runs.get_group((arch, method)))} "
            f"fine-tunes did not train: {_diseases(group)}."
        )
    weak = diagnostics[diagnostics["weak_start"].astype(str) == "yes"]
    for arch, group in weak.groupby("architecture", sort=False):
        found.append(
            f"{arch}: the warm-up barely ranks {_diseases(group)} (val AUC below "
            f"{WEAK_START_AUC:g} or a score spread below {WEAK_START_SPREAD:g}): AUC-margin "
            "fine-tunes from such a start tend to sink or collapse. Starting weights that "
            "already rank (`pretrained`) or a longer warm-up give them a fair start."
        )
    for split in ("test", "val"):
        for disease, few in split_cautions(audit, split).items():
            if few:
                found.append(f"{disease}: {few}: its AUCs have wide intervals.")
    return found


def _diseases(group: pd.DataFrame) -> str:
    return ", ".join(sorted(set(group["disease"])))


def _kinds(group: pd.DataFrame) -> list[str]:
    """What the failed fine-tunes of ``group`` (diagnostics rows) did."""
    kinds = []
    if (group["sunk_rates"] > 0).any():
        kinds.append("scores sank")
    if (group["collapsed_rates"] > 0).any():
        kinds.append("collapse")
    if group["failure"].astype(str).str.contains("kept step 0").any():
        kinds.append("kept step 0 while CE trained")
    return kinds
