"""The DAM study's ensemble of every family, across study runs (docs/dam-study.md).

A study whose families ran in separate runs (``bench/dam_study.sh <families>`` in separate
folders, on the same cohort) has each run's own ensemble only. This builds the ensemble of all
their families the way the pipeline does (``ensemble_architectures`` then ``ensemble_seeds``:
``deepauc.evaluation.ensemble.average_members``), and scores it the way ``summarize`` does:
per method the mean test AUC over the diseases with its 95% patient-bootstrap CI, and each
method against CE at equal compute and against the warm-up, with the bootstrap over seeds, then
patients. The members must share test images and labels (the same synthetic cohort and
``seed``), or ``average_members`` refuses them.

    python bench/dam_study_ensemble.py <folder holding results/> [<folder> ...]

Run on a single run's folder, it reproduces that run's ``ensemble`` rows of ``summary.csv`` and
``comparison.csv`` (a check that it combines as the pipeline does).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd
from dam_study_table import METHOD_NAMES  # bench/, the script's own folder
from markdown_table import markdown

from deepauc.evaluation.ensemble import average_members
from deepauc.evaluation.scores import score_predictions
from deepauc.evaluation.stats import MEAN, compare_methods
from deepauc.evaluation.summary import VS_CONTROL, VS_WARMUP
from deepauc.methods import CONTROL, WARMUP


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument(
        "--resamples", type=int, default=1000, help="evaluation.bootstrap_resamples"
    )
    parser.add_argument("--seed", type=int, default=0, help="evaluation.bootstrap_seed")
    parser.add_argument("--combine", default="mean", help="ensemble.combine")
    args = parser.parse_args(argv)
    members = family_folders(args.folders)
    print(f"ensemble of {len(members)} families: {', '.join(members)}", file=sys.stderr)
    rows = ensemble_rows(members, args.resamples, args.seed, args.combine)
    table = pd.DataFrame(
        {
            "method": rows["method"].map(METHOD_NAMES).fillna(rows["method"]),
            "test AUC [95% CI]": [_with_interval(r, "auc", "{:.3f}") for r in rows.itertuples()],
            f"{VS_CONTROL} [95% CI]": [
                _with_interval(r, "vs_ce", "{:+.3f}") for r in rows.itertuples()
            ],
            "p (vs CE)": rows["vs_ce_p"].fillna(""),
            f"{VS_WARMUP} [95% CI]": [
                _with_interval(r, "vs_warmup", "{:+.3f}") for r in rows.itertuples()
            ],
            "p (vs warm-up)": rows["vs_warmup_p"].fillna(""),
        }
    )
    print(markdown(table))


def ensemble_rows(
    members: dict[str, Path], resamples: int, seed: int, combine: str = "mean"
) -> pd.DataFrame:
    """One row per method: the ensemble's mean test AUC (``auc``, ``auc_low``, ``auc_high``)
    and its differences against CE (``vs_ce*``) and the warm-up (``vs_warmup*``), each with its
    interval and reported p; NaN where the method is its own control."""
    seeds, methods = shared_seeds_and_methods(members)
    per_seed = {
        method: [
            average_members(
                [pd.read_csv(folder / f"seed{k}" / f"{method}.csv") for folder in members.values()],
                combine,
            )
            for k in seeds
        ]
        for method in methods
    }
    final = {method: average_members(tables, combine) for method, tables in per_seed.items()}
    rows = []
    for method in methods:
        mean = score_predictions(final[method], resamples, seed).set_index("disease").loc[MEAN]
        row = {"method": method, "auc": mean.auc, "auc_low": mean.auc_low}
        row["auc_high"] = mean.auc_high
        for name, control in (("vs_ce", CONTROL), ("vs_warmup", WARMUP)):
            if method in (control, WARMUP):
                continue
            compared = compare_methods(
                final[method], final[control], resamples, seed, per_seed[method], per_seed[control]
            ).set_index("disease")
            delta = compared.loc[MEAN]
            row |= {
                name: delta.delta,
                f"{name}_low": delta.delta_low,
                f"{name}_high": delta.delta_high,
                f"{name}_p": delta.p_reported,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def _with_interval(row, name: str, number: str) -> str:
    value = getattr(row, name, float("nan"))
    if pd.isna(value):
        return ""
    low, high = getattr(row, f"{name}_low"), getattr(row, f"{name}_high")
    return f"{number.format(value)} [{number.format(low)}, {number.format(high)}]"


def family_folders(folders: list[Path]) -> dict[str, Path]:
    """Each finished family's ``results/predictions/<family>`` across the runs.

    A family is a predictor with models of its own (``results/models/<family>``); the run's
    ensembles, ``ensemble`` and any configured subset, have none. It counts once its seed
    ensembles of CE and the warm-up exist (a run stopped early has some families' predictions
    only in part: they are skipped, and said so). A family finished in two runs is refused:
    which of the two would count?
    """
    members: dict[str, Path] = {}
    for folder in folders:
        predictions = folder / "results" / "predictions"
        if not predictions.is_dir():
            sys.exit(f"{predictions}: not found; extract the run's main.tar.xz into {folder}")
        for family in sorted(p for p in predictions.iterdir() if p.is_dir()):
            if not (folder / "results" / "models" / family.name).is_dir():
                continue
            if not all((family / "seeds" / f"{m}.csv").is_file() for m in (CONTROL, WARMUP)):
                print(f"skipped {family}: its predictions did not finish", file=sys.stderr)
                continue
            if family.name in members:
                sys.exit(f"{family.name} finished in {members[family.name]} and {family}: keep one")
            members[family.name] = family
    if not members:
        sys.exit("no finished family predictions under the folders given")
    return members


def shared_seeds_and_methods(members: dict[str, Path]) -> tuple[list[int], list[str]]:
    """The seeds and methods every family has predictions for, so the ensemble is complete."""
    seeds, methods = None, None
    for folder in members.values():
        found = {
            int(p.name.removeprefix("seed"))
            for p in folder.glob("seed*")
            if p.is_dir() and p.name != "seeds"
        }
        found_methods = {p.stem for p in folder.glob("seed*/*.csv") if p.parent.name != "seeds"}
        seeds = found if seeds is None else seeds & found
        methods = found_methods if methods is None else methods & found_methods
    if not seeds or CONTROL not in methods or WARMUP not in methods:
        sys.exit(f"the families {', '.join(members)} share no seed with both CE and the warm-up")
    order = [WARMUP] + sorted(methods - {WARMUP, CONTROL}) + [CONTROL]
    return sorted(seeds), order


if __name__ == "__main__":
    main()
