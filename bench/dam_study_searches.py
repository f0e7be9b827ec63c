"""The first seed's rate searches of a DAM study run, finished or not (docs/dam-study.md).

A study stopped before its predictions (bench/dam_study.sh with STUDY_TIME_LIMIT) has no
summary yet, but its searches say whether the fine-tunes train. From the fine-tune histories
under ``results/models/<architecture>/<first seed>/<method>/lr*/``, each (family, method,
disease) whose grid has at least three rates finished is chosen the way the pipeline chooses
(``deepauc.evaluation.diagnostics.diagnostics_row``); one row per family and method:

- searches: diseases with three or more rates finished;
- trained: chosen fine-tunes that moved off step 0 and their backbone by at least the threshold;
- median drift of the chosen evaluations, and the mean val gain of the chosen over step 0;
- on an edge: searches whose choice is the lowest or highest rate tried so far (the grid then
  grows, up to ``finetune.grid_extensions`` times); rates: how many each search tried.

    python bench/dam_study_searches.py <folder holding results/> [--seed 0]
"""

import argparse
from pathlib import Path

import pandas as pd
from markdown_table import markdown  # bench/, the script's own folder

from deepauc.config.rates import grid_extension, rate_of
from deepauc.config.runs import run_of_history
from deepauc.evaluation.diagnostics import diagnostics_row

MIN_RATES = 3  # a search's base grid


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a study run's folder (holding results/)")
    parser.add_argument("--seed", type=int, default=0, help="the seed that searched the rates")
    args = parser.parse_args(argv)
    searches = search_rows(args.folder / "results" / "models", args.seed)
    print(markdown(family_table(searches)))


def search_rows(models: Path, seed: int) -> pd.DataFrame:
    """One row per (family, method, disease) search with at least MIN_RATES rates finished."""
    searches: dict[tuple[str, str, str], dict[float, pd.DataFrame]] = {}
    for path in sorted(models.glob(f"*/seed{seed}/*/lr*/*.history.csv")):
        run = run_of_history(path)
        if run is None:
            continue
        history = pd.read_csv(path)
        key = (run.architecture, run.method, run.disease)
        searches.setdefault(key, {})[rate_of(run.label, history)] = history
    rows = []
    for (arch, method, disease), histories in searches.items():
        if len(histories) < MIN_RATES:
            continue
        key = {"architecture": arch, "method": method, "disease": disease}
        row = diagnostics_row(key, histories)
        row["val_gain"] = row["best_val_auc"] - row["val_auc_step0"]
        # the pipeline's own rule: a choice on an edge is where the grid would grow
        row["on_edge"] = grid_extension(list(histories), row["chosen_lr"]) is not None
        rows.append(row)
    return pd.DataFrame(rows)


def family_table(searches: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (arch, method), group in searches.groupby(["architecture", "method"], sort=False):
        rows.append(
            {
                "family": arch,
                "method": method,
                "searches": len(group),
                "trained": int((group["trained"] == "yes").sum()),
                "median drift": f"{group['backbone_drift'].median():.4f}",
                "mean val gain over step 0": f"{group['val_gain'].mean():+.3f}",
                "on an edge": int(group["on_edge"].sum()),
                "rates tried": ", ".join(str(n) for n in group["rates_tried"]),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
