"""The DAM study's results table (docs/dam-study.md) from the folders bench/dam_study.sh filled.

Each folder holds one study run's ``results/`` (summary.csv, seeds.csv, comparison.csv,
diagnostics.csv, benchmarks/) for one or more families, e.g. ``bench/results/dam_study/davit_tiny``.
One row per family and method:

- mean test AUC over the five diseases with its 95% bootstrap CI, for the three seeds' averaged
  predictions (``summary.csv``);
- the mean and standard deviation over the seeds of each seed's own mean test AUC (``seeds.csv``);
- the paired difference against CE and its p-value (``comparison.csv``: paired bootstrap for the
  mean over diseases);
- the rate chosen on seed 0's val for each disease, in ``diseases`` order (``diagnostics.csv``);
- fine-tunes flagged collapsed, of all the method's fine-tunes (grid runs included);
- the method's fine-tune job-minutes: wall seconds of its jobs summed (``benchmarks/``; jobs
  shared the GPUs, so this is an upper bound of GPU time).

    python bench/dam_study_table.py bench/results/dam_study/*/
"""

import argparse
import sys
from pathlib import Path

import pandas as pd
from markdown_table import markdown  # bench/, the script's own folder

METHOD_NAMES = {
    "warmup": "warm-up",
    "dam": "DAM (AUCM + PESG)",
    "compositional": "compositional (PDSCA)",
    "ce": "CE (Adam)",
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study result folders")
    args = parser.parse_args(argv)
    rows = [row for folder in args.folders for row in family_rows(folder)]
    print(markdown(pd.DataFrame(rows)))


def family_rows(folder: Path) -> list[dict]:
    results = folder / "results"
    summary = pd.read_csv(results / "summary.csv")
    seeds = pd.read_csv(results / "seeds.csv")
    comparison = pd.read_csv(results / "comparison.csv")
    diagnostics = pd.read_csv(results / "diagnostics.csv")
    rows = []
    for arch in [a for a in summary.architecture.unique() if a != "ensemble"]:
        for method in METHOD_NAMES:
            selected = "architecture == @arch and method == @method and disease == 'mean'"
            mean = summary.query(selected)
            if mean.empty:
                continue
            per_seed = seeds.query(selected).auc
            row = {
                "family": arch,
                "method": METHOD_NAMES[method],
                "test AUC [95% CI]": f"{mean.auc.iloc[0]:.3f} "
                f"[{mean.auc_low.iloc[0]:.3f}, {mean.auc_high.iloc[0]:.3f}]",
                "per seed": f"{per_seed.mean():.3f} ± {per_seed.std():.3f}",
            }
            row.update(versus_ce(comparison, arch, method))
            row.update(tuning(diagnostics, arch, method))
            row["job-min"] = job_minutes(results / "benchmarks", arch, method)
            rows.append(row)
    return rows


def versus_ce(comparison: pd.DataFrame, arch: str, method: str) -> dict:
    found = comparison.query(
        "architecture == @arch and method == @method and control == 'ce' and disease == 'mean'"
    )
    if found.empty:
        return {"vs CE": "", "p": ""}
    return {"vs CE": f"{found.delta.iloc[0]:+.3f}", "p": f"{found.p_value.iloc[0]:.3f}"}


def tuning(diagnostics: pd.DataFrame, arch: str, method: str) -> dict:
    runs = diagnostics.query("architecture == @arch and method == @method")
    if runs.empty:
        return {"rates (seed 0)": "", "collapsed": ""}
    first = runs[runs.seed == runs.seed.min()]
    rates = ", ".join(f"{rate:g}" for rate in first.chosen_lr)
    collapsed = int(runs.collapsed_rates.sum())
    tried = int(runs.rates_tried.sum())
    return {"rates (seed 0)": rates, "collapsed": f"{collapsed} of {tried}"}


def job_minutes(benchmarks: Path, arch: str, method: str) -> str:
    if method == "warmup":
        files = list((benchmarks / "warmup" / arch).glob("*.tsv"))
    else:
        files = list((benchmarks / "finetune" / arch).glob(f"seed*/{method}/**/*.tsv"))
    seconds = sum(pd.read_csv(f, sep="\t").s.iloc[-1] for f in files)
    return f"{seconds / 60:.1f}"


if __name__ == "__main__":
    sys.exit(main())
