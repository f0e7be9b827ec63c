"""When a number means little, said beside it.

Two things make a result weak however it is computed: a split with few cases of a class
(``deepauc.data.splits.few_cases``: an AUC over 7 positives has a confidence interval spanning
most of [0, 1], and a val AUC over them picks models by chance), and a warm-up that never
learned (its best val evaluation is step 0, before any training: every fine-tune of that
architecture starts from an untrained network).
Both are warned about in the job logs and marked in ``results/diagnostics.csv`` and in the
``caution`` column of ``results/summary.csv``; an empty caution means none applies.

A fine-tune that failed says so too: its scores sank into the sigmoid's floor or ceiling,
collapsed, or stayed at step 0 at every rate while CE trained (``failure`` in
``results/diagnostics.csv``, named per seed or member in ``caution``), and one that started from a
warm-up that barely ranks its disease (``weak_start``).

A third says what a fine-tune's row is a result of: a fine-tune that did not train
(``results/diagnostics.csv`` column ``trained`` is ``no``: val kept step 0, the warm-up itself,
or the backbone hardly moved) is the warm-up under another name, so its row measures the
warm-up, not the method. :func:`trained_marks` turns those rows into the ``trained`` column of
``summary.csv`` and ``comparison.csv`` (``yes``, ``no``, ``partly`` where some seeds or ensemble
members did not train; empty for the warm-up and where diagnostics have no row), and
:func:`summary_cautions` names the seeds (or members) in ``caution``.
"""

import pandas as pd

from deepauc.data.splits import few_cases
from deepauc.evaluation.stats import MEAN
from deepauc.methods import WARMUP


def untrained_warmup(best_step: int, seed: int | None = None) -> str:
    """The caution for a warm-up whose best val evaluation is ``best_step`` ('' unless 0)."""
    if int(best_step) != 0:
        return ""
    which = f"seed {seed}'s warm-up" if seed is not None else "the warm-up"
    return f"{which} never learned (best val AUC at step 0)"


def untrained_finetune(where: str = "", min_drift: float | None = None) -> str:
    """The caution for fine-tunes that did not train; ``where`` names seeds or members, and
    ``min_drift`` is the diagnose rule's threshold of backbone drift, when known."""
    moved = f"backbone drift < {min_drift:g}" if min_drift is not None else "backbone hardly moved"
    return f"did not train (kept the warm-up or {moved})" + (f" {where}" if where else "")


def split_cautions(audit: pd.DataFrame, split: str) -> dict[str, str]:
    """Per disease, the few-cases caution of ``split`` in a label audit (label_audit.csv)."""
    rows = audit[audit["split"] == split]
    return {
        row.disease: few_cases(split, int(row.positive), int(row.negative))
        for row in rows.itertuples()
    }


def join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


#: ``trained`` values (summary.csv, comparison.csv).
TRAINED, UNTRAINED, PARTLY = "yes", "no", "partly"

#: (architecture, method, disease) -> {seed: "yes" or "no"}, from diagnostics.csv.
RunMarks = dict[tuple[str, str, str], dict[int, str]]


def run_marks(diagnostics: pd.DataFrame | None) -> RunMarks:
    """Each fine-tune's ``trained`` mark from ``results/diagnostics.csv``; empty without the
    column (diagnostics of an older run), and a row without a yes/no stays unmarked."""
    marks: RunMarks = {}
    if diagnostics is None or "trained" not in diagnostics:
        return marks
    for row in diagnostics.itertuples():
        value = str(row.trained).strip().lower()
        if value in (TRAINED, UNTRAINED):
            key = (row.architecture, row.method, row.disease)
            marks.setdefault(key, {})[int(row.seed)] = value
    return marks


def _combined(values: list[str]) -> str:
    """yes if every known mark is yes, no if every one is no, partly otherwise; '' if none."""
    known = {value for value in values if value}
    if not known:
        return ""
    return known.pop() if len(known) == 1 else PARTLY


def _untrained_runs(
    row, marks: RunMarks, members: dict[str, list[str]]
) -> tuple[list[str], dict[str, list[int]], dict[str, int]]:
    """For a disease row: the marks of its fine-tunes (each member and seed), the seeds that
    did not train per architecture, and how many seeds each architecture has marks for."""
    values, untrained, seen = [], {}, {}
    for arch in members.get(row.architecture, [row.architecture]):
        by_seed = marks.get((arch, row.method, row.disease), {})
        values += by_seed.values()
        seen[arch] = len(by_seed)
        failed = [seed for seed, value in sorted(by_seed.items()) if value == UNTRAINED]
        if failed:
            untrained[arch] = failed
    return values, untrained, seen


def trained_marks(
    summary: pd.DataFrame, diagnostics: pd.DataFrame | None, members: dict[str, list[str]]
) -> pd.Series:
    """The ``trained`` column of summary.csv: per disease row, whether the fine-tunes behind
    it (every seed, and every member of an ensemble) trained; a ``mean`` row combines its
    diseases' rows. Empty for the warm-up and where diagnostics have no row."""
    marks = run_marks(diagnostics)
    trained = {}
    for row in summary.itertuples():
        if row.disease != MEAN and row.method != WARMUP:
            trained[row.Index] = _combined(_untrained_runs(row, marks, members)[0])
    for row in summary.itertuples():
        if row.disease == MEAN and row.method != WARMUP:
            same = (summary["architecture"] == row.architecture) & (summary["method"] == row.method)
            trained[row.Index] = _combined([trained.get(i, "") for i in summary.index[same]])
    return pd.Series(trained, dtype=object).reindex(summary.index).fillna("")


def _seeds(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def _untrained_note(
    row, marks: RunMarks, members: dict[str, list[str]], min_drift: float | None
) -> str:
    """A disease row's caution for its fine-tunes that did not train, naming the seeds (when
    the architecture ran several) or, for an ensemble, the members and their seeds."""
    _, untrained, seen = _untrained_runs(row, marks, members)
    if not untrained:
        return ""
    if row.architecture not in members:
        seeds = untrained[row.architecture]
        return untrained_finetune(
            f"on {_seeds(seeds)}" if seen[row.architecture] > 1 else "", min_drift
        )
    names = [
        f"{arch} ({_seeds(seeds)})" if seen[arch] > 1 else arch for arch, seeds in untrained.items()
    ]
    which = "member" if len(names) == 1 else "members"
    return untrained_finetune(f"for {which} {', '.join(names)}", min_drift)


#: (architecture, method, disease) -> {seed: what went wrong}, from diagnostics.csv.
RunNotes = dict[tuple[str, str, str], dict[int, str]]


def run_notes(diagnostics: pd.DataFrame | None, column: str) -> RunNotes:
    """Each fine-tune's non-empty ``column`` of ``results/diagnostics.csv`` (``failure``: its
    scores sank, collapsed or stayed at step 0; ``weak_start``: yes where its warm-up barely
    ranked the disease); empty without the column (diagnostics of an older run)."""
    notes: RunNotes = {}
    if diagnostics is None or column not in diagnostics:
        return notes
    for row in diagnostics.itertuples():
        value = getattr(row, column)
        value = "" if pd.isna(value) or str(value).strip().lower() in ("", "no") else str(value)
        if value:
            notes.setdefault((row.architecture, row.method, row.disease), {})[int(row.seed)] = value
    return notes


def _noted_runs(
    row, notes: RunNotes, members: dict[str, list[str]], seed_counts: dict[str, int]
) -> list[tuple[str, str]]:
    """Per member (or the architecture) and seed, what ``notes`` hold for a disease row, with
    where it was (the member and, when its architecture ran several seeds, the seed; '' for a
    single architecture and seed)."""
    found = []
    ensemble = row.architecture in members
    for arch in members.get(row.architecture, [row.architecture]):
        for seed, note in sorted(notes.get((arch, row.method, row.disease), {}).items()):
            where = [arch] if ensemble else []
            if seed_counts.get(arch, 1) > 1:
                where.append(f"seed {seed}")
            found.append((" ".join(where), note))
    return found


def _counted(diseases: list, notes: dict, what: str) -> str:
    """A mean row's note: how many of its disease rows carry ``notes``, and which."""
    hit = [other.disease for other in diseases if notes.get(other.Index)]
    if not hit:
        return ""
    return f"mean includes {len(hit)} of {len(diseases)} diseases {what}: {', '.join(hit)}"


def summary_cautions(
    summary: pd.DataFrame,
    audit: pd.DataFrame,
    warmup_steps: dict[str, dict[int, int]],
    members: dict[str, list[str]],
    diagnostics: pd.DataFrame | None = None,
    min_drift: float | None = None,
) -> pd.Series:
    """The ``caution`` of each summary row: few test or val cases of its disease, warm-ups of
    its architecture (or of an ensemble's members) that never learned, and fine-tunes behind
    it that did not train (``diagnostics``: diagnostics.csv; ``min_drift``: its drift
    threshold, for the wording). A ``mean`` row names the diseases whose rows carry a caution
    of few cases, and says how many of its diseases rest on fine-tunes that did not train.
    ``warmup_steps`` maps each architecture to the best val step of each seed's warm-up;
    ``members`` each ensemble to its architectures."""
    val = split_cautions(audit, "val")
    marks = run_marks(diagnostics)
    failures, weak = run_notes(diagnostics, "failure"), run_notes(diagnostics, "weak_start")

    seed_counts: dict[str, int] = {}
    for (arch, _, _), by_seed in marks.items():
        seed_counts[arch] = max(seed_counts.get(arch, 1), len(by_seed))

    def failed(row) -> str:
        runs = _noted_runs(row, failures, members, seed_counts)
        return join(*(f"{where}: {note}" if where else note for where, note in runs))

    def weak_start(row) -> str:
        runs = _noted_runs(row, weak, members, seed_counts)
        if not runs:
            return ""
        where = [where for where, _ in runs if where]
        return f"started from a warm-up that barely ranks {row.disease}" + (
            f" ({', '.join(where)})" if where else ""
        )

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

    data, untrained, cautions, broken, weakly = {}, {}, {}, {}, {}
    for row in summary.itertuples():
        if row.disease != MEAN:
            test = few_cases("test", int(row.n_pos), int(row.n_neg))
            data[row.Index] = join(test, val.get(row.disease, ""))
            if row.method != WARMUP:
                untrained[row.Index] = _untrained_note(row, marks, members, min_drift)
                broken[row.Index] = failed(row)
                weakly[row.Index] = weak_start(row)
    for row in summary.itertuples():
        if row.disease != MEAN:
            cautions[row.Index] = join(
                data[row.Index],
                warmups(row.architecture),
                weakly.get(row.Index, ""),
                untrained.get(row.Index, ""),
                broken.get(row.Index, ""),
            )
            continue
        diseases = [
            other
            for other in summary.itertuples()
            if other.disease != MEAN
            and (other.architecture, other.method) == (row.architecture, row.method)
        ]
        flagged = [other.disease for other in diseases if data.get(other.Index)]
        few = f"includes {', '.join(flagged)}, with few cases" if flagged else ""

        rests = _counted(diseases, untrained, "whose fine-tune did not train")
        failing = _counted(
            diseases, broken, "where a fine-tune sank, collapsed or kept step 0 at some rate"
        )
        starts = [other.disease for other in diseases if weakly.get(other.Index)]
        barely = (
            f"the warm-up barely ranks {', '.join(starts)}"
            if starts and row.method != WARMUP
            else ""
        )
        cautions[row.Index] = join(warmups(row.architecture), few, barely, rests, failing)
    return pd.Series(cautions).reindex(summary.index).fillna("")
