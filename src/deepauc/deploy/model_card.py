"""``results/model_card.md``: what a reviewer or a deployment team asks of the trained models,
written from the run's own tables, never by hand.

Data and splits with counts, the uncertainty policy, the protocol, test metrics with their
95% intervals, calibration, operating points, subgroup gaps, the runs that collapsed or did
not train, and the limitations that apply to this run (synthetic data, no pretrained weights,
small images, one seed, few test positives).
"""

import pandas as pd

from deepauc.evaluation.stats import MEAN
from deepauc.evaluation.summary import IMAGE_LEVEL
from deepauc.methods import WARMUP, style

#: Fewer test positives than this in a disease and its intervals are wide: said so.
FEW_POSITIVES = 30
#: Below this training size chest X-ray findings are at most coarsely visible: said so.
SMALL_IMAGES = 224


def _interval(row, name: str) -> str:
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if pd.isna(value):
        return "n/a"
    if pd.isna(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _label(method: str) -> str:
    return style(method).label if method != WARMUP else "warm-up (multi-label CE)"


def model_card(tables: dict[str, pd.DataFrame], facts: dict) -> str:
    """The card's Markdown. ``tables``: ``summary, comparison, calibration, subgroups,
    diagnostics, audit`` as the run wrote them. ``facts``: the run's settings (see the
    model_card rule): ``predictors, methods, members, architectures, seeds, diseases,
    policies, synthetic, dataset, image_size, pretrained, warmup, finetune, combine,
    exports``."""
    summary = tables["summary"]
    if "level" in summary:
        summary = summary[summary["level"] == IMAGE_LEVEL]
    lines = [
        "# Model card",
        "",
        "Written by the deepauc pipeline from this run's own results "
        "(`results/summary.csv` and the tables beside it). Every test number was computed "
        "once, on the test split, after every choice (rates, epochs, ensemble weights, "
        "calibration, thresholds) was made on val. Intervals are 95% patient-bootstrap "
        "intervals.",
        "",
    ]
    lines += _details(facts)
    lines += _intended_use()
    lines += _data(tables["audit"], facts)
    for predictor in facts["predictors"]:
        for method in facts["methods"]:
            lines += _metrics(summary, tables, facts, predictor, method)
    lines += _health(tables["diagnostics"], summary, facts)
    lines += _limitations(tables, summary, facts)
    return "\n".join(lines).rstrip() + "\n"


def _details(facts: dict) -> list[str]:
    warmup, finetune = facts["warmup"], facts["finetune"]
    pretrained = facts["pretrained"]
    start = (
        "trained from scratch (random initialisation)"
        if pretrained is False
        else ("timm's ImageNet weights" if pretrained is True else f"weights from {pretrained}")
    )
    lines = ["## Model", ""]
    lines.append(f"- Architectures (timm): {', '.join(facts['architectures'])}; {start}.")
    lines.append(
        f"- Stage 1: multi-label BCE warm-up on all diseases, {warmup['epochs']} epoch(s) at "
        f"lr {warmup['lr']:g}. Stage 2: one binary model per disease, fine-tuned "
        f"{finetune['epochs']} epoch(s) from the warm-up by each method: "
        + ", ".join(f"{m} ({_label(m)})" for m in finetune["methods"])
        + ". Rates, epochs and the step kept were chosen on val AUC."
    )
    lines.append(f"- Seeds: {', '.join(str(s) for s in facts['seeds'])}.")
    lines.append(
        f"- Input: grayscale, resized to {facts['image_size']} x {facts['image_size']} px, "
        "repeated to three channels and normalized with ImageNet's mean and std."
    )
    for predictor in facts["predictors"]:
        members = facts["members"].get(predictor)
        if members:
            lines.append(
                f"- `{predictor}`: an ensemble of {', '.join(members)} (combine: "
                f"{facts['combine']}"
                + ("; member weights chosen on val" if predictor.endswith("-selected") else "")
                + "), each member an architecture's disease models."
            )
        else:
            lines.append(f"- `{predictor}`: the disease models of {predictor}.")
    for folder, card in facts.get("exports", {}).items():
        parity = card.get("parity", {}).get("max_abs_difference")
        checked = ""
        if parity is not None:
            checked = (
                "; its scores equal the pipeline's"
                if parity == 0
                else (f"; its scores within {parity:.1g} of the pipeline's")
            )
        lines.append(
            f"- Exported for use: `{folder}` (safetensors weights, card.json, TorchScript"
            f"{checked})."
        )
    return lines + [""]


def _intended_use() -> list[str]:
    return [
        "## Intended use",
        "",
        "Research on chest X-ray classification and on how AUC-maximizing training compares "
        "with cross-entropy. Not a medical device and not validated for clinical decisions: a "
        "site that uses it must measure it on its own patients first (`inference:` in the "
        "config scores a labelled image set with the same metrics).",
        "",
    ]


def _data(audit: pd.DataFrame, facts: dict) -> list[str]:
    lines = ["## Data", ""]
    if facts["synthetic"]:
        lines.append(
            "- **Synthetic phantoms** generated by the pipeline (`synthetic.enabled: true`), "
            "not chest X-rays."
        )
    else:
        lines.append(f"- Dataset: {facts['dataset']}.")
    lines.append(
        "- Splits: train and val from the training CSV, by patient (no patient in both); "
        "test is the dataset's own test CSV."
    )
    policies = facts["policies"]
    lines.append(
        "- Uncertainty policy (CheXpert's -1 labels): "
        + ", ".join(f"{d}: U-{policies.get(d, 'zeros').capitalize()}" for d in facts["diseases"])
        + "; blank labels count as negative."
    )
    lines.append("")
    rows = []
    for row in audit.itertuples():
        rows.append([row.split, row.disease, row.images, row.positive, row.negative, row.ignored])
    lines += _table(["split", "disease", "images", "positive", "negative", "ignored"], rows)
    return lines


def _metrics(summary, tables, facts, predictor: str, method: str) -> list[str]:
    mine = summary[(summary["architecture"] == predictor) & (summary["method"] == method)]
    lines = [f"## Test metrics: `{predictor}`, {_label(method)}", ""]
    if mine.empty:
        return lines + ["Not in summary.csv (not run).", ""]
    rows = [
        [
            r["disease"],
            _interval(r, "auc"),
            _interval(r, "pauc10"),
            _interval(r, "sens90"),
            "n/a" if pd.isna(r["spec90"]) else f"{r['spec90']:.3f}",
            _interval(r, "sens95"),
            f"{r['auprc']:.3f}",
            f"{int(r['n_pos'])}/{int(r['n_neg'])}",
            r.get("trained", "") or "",
        ]
        for _, r in mine.iterrows()
    ]
    header = [
        "disease",
        "AUC",
        "pAUC (FPR<=0.1)",
        "sens @ val spec 90",
        "test spec",
        "sens @ val spec 95",
        "AUPRC",
        "pos/neg",
        "trained",
    ]
    lines += _table(header, rows)
    others = summary[(summary["architecture"] == predictor) & (summary["disease"] == MEAN)]
    lines += ["Mean AUC of every method of this predictor (same test images):", ""]
    lines += _table(
        ["method", "mean AUC", "mean sens @ spec 90"],
        [
            [_label(r["method"]), _interval(r, "auc"), _interval(r, "sens90")]
            for _, r in others.iterrows()
        ],
    )
    comparison = tables["comparison"]
    versus = comparison[
        (comparison["architecture"] == predictor) & (comparison["method"] == method)
    ]
    if not versus.empty:
        lines += ["AUC differences (method minus the other; 95% interval, q-value):", ""]
        lines += _table(
            ["vs", "disease", "delta", "interval", "q"],
            [
                [
                    r["control"],
                    r["disease"],
                    f"{r['delta']:+.3f}",
                    f"[{r['delta_low']:+.3f}, {r['delta_high']:+.3f}]",
                    "" if pd.isna(r.get("q_value")) else f"{r['q_value']:.3g}",
                ]
                for _, r in versus.iterrows()
            ],
        )
    lines += _calibration(tables["calibration"], predictor, method)
    lines += _subgroups(tables["subgroups"], predictor, method)
    return lines


def _calibration(calibration: pd.DataFrame, predictor: str, method: str) -> list[str]:
    rows = calibration[
        (calibration["architecture"] == predictor) & (calibration["method"] == method)
    ]
    lines = ["### Calibration (Platt scaling fitted on val, measured on test)", ""]
    if rows.empty:
        return lines + ["No calibration rows.", ""]
    return (
        lines
        + _table(
            ["disease", "slope", "intercept", "ECE before", "ECE after", "Brier after"],
            [
                [
                    r["disease"],
                    f"{r['slope']:.3g}",
                    f"{r['intercept']:.3g}",
                    f"{r['ece_before']:.3f}",
                    f"{r['ece_after']:.3f}",
                    f"{r['brier_after']:.3f}",
                ]
                for _, r in rows.iterrows()
            ],
        )
        + [
            "Operating points: `sens90` and `sens95` are thresholds chosen on val where val "
            "reached 90% and 95% specificity; the metrics table gives the test sensitivity and "
            "specificity they reach. The exported card holds the thresholds themselves.",
            "",
        ]
    )


def _subgroups(subgroups: pd.DataFrame, predictor: str, method: str) -> list[str]:
    rows = subgroups[(subgroups["architecture"] == predictor) & (subgroups["method"] == method)]
    lines = ["### Subgroups (test AUC per group; largest gap per attribute)", ""]
    if rows.empty:
        return lines + ["The test CSV has no sex, age or view columns: no subgroups.", ""]
    out = []
    for (disease, attribute), group in rows.groupby(["disease", "attribute"], sort=False):
        notes = group["note"].fillna("") if "note" in group else pd.Series("", group.index)
        marked = group[notes.astype(str) != ""]
        group = group[notes.astype(str) == ""]
        small = group[group["small"].astype(str).str.lower().isin(["yes", "true"])]
        worst = group.loc[group["auc"].idxmin()] if group["auc"].notna().any() else None
        out.append(
            [
                disease,
                attribute,
                "n/a"
                if pd.isna(group["largest_gap"].iloc[0])
                else f"{group['largest_gap'].iloc[0]:.3f}",
                "" if worst is None else f"{worst['group']} ({worst['auc']:.3f})",
                ", ".join(str(g) for g in small["group"]) or "none",
                ", ".join(f"{r.group} ({r.n_pos + r.n_neg} images)" for r in marked.itertuples())
                or "none",
            ]
        )
    headers = ["disease", "attribute", "largest AUC gap", "lowest group"]
    headers += ["groups too small to read", "not recorded or uncommon (not in the gap)"]
    return lines + _table(headers, out)


def _health(diagnostics: pd.DataFrame, summary: pd.DataFrame, facts: dict) -> list[str]:
    lines = ["## Training health", ""]
    collapsed = diagnostics[diagnostics["collapsed"].astype(str) == "yes"]
    untrained = diagnostics[diagnostics["trained"].astype(str) == "no"]
    for rows, what in (
        (collapsed, "Collapsed (val AUC fell to chance, or the scores went constant)"),
        (untrained, "Did not train (kept the warm-up, or the backbone hardly moved)"),
    ):
        runs = ", ".join(
            f"{r.architecture}/seed{r.seed}/{r.method}/{r.disease}" for r in rows.itertuples()
        )
        lines.append(f"- {what}: {f'{len(rows)} fine-tune(s): {runs}' if runs else 'none'}.")
    cautions = summary[summary.get("caution", pd.Series(dtype=str)).fillna("").astype(str) != ""]
    chosen = cautions[
        cautions["architecture"].isin(facts["predictors"])
        & cautions["method"].isin(facts["methods"])
    ]
    for r in chosen.drop_duplicates("caution").itertuples():
        lines.append(f"- Caution ({r.architecture}, {r.method}, {r.disease}): {r.caution}.")
    return lines + [""]


def _limitations(tables: dict, summary: pd.DataFrame, facts: dict) -> list[str]:
    notes = []
    if facts["synthetic"]:
        notes.append(
            "Trained and tested on synthetic phantoms: the numbers show that the pipeline "
            "works, and say nothing about chest X-rays."
        )
    if facts["pretrained"] is False:
        notes.append("Trained from scratch: no ImageNet weights, unlike the write-up's recipe.")
    if facts["image_size"] < SMALL_IMAGES:
        notes.append(
            f"Images at {facts['image_size']} px: fine findings are not visible at this size."
        )
    if len(facts["seeds"]) == 1:
        notes.append("One seed: the intervals hold test-set sampling only, not training noise.")
    test = tables["audit"][tables["audit"]["split"] == "test"]
    few = test[test["positive"] < FEW_POSITIVES]
    if not few.empty:
        notes.append(
            f"Fewer than {FEW_POSITIVES} test positives for "
            + ", ".join(f"{r.disease} ({r.positive})" for r in few.itertuples())
            + ": wide intervals."
        )
    labels = (
        "Labels are the generator's simulated report labels, noisy on purpose"
        if facts["synthetic"]
        else "Labels come from report text (CheXpert's labeller) and carry its errors"
    )
    notes.append(
        f"{labels}; the uncertainty policy above decides what an uncertain finding counts as."
    )
    notes.append(
        "Thresholds and calibration were chosen on val from the same hospital as the "
        "training data: at another site, prevalence and scanners differ; re-check both there."
    )
    return ["## Limitations", ""] + [f"- {n}" for n in notes] + [""]
