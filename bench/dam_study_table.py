"""The DAM study's results table (docs/dam-study.md) from the folders bench/dam_study.sh filled.

Each folder holds one study run's ``results/`` (summary.csv, seeds.csv, comparison.csv,
diagnostics.csv, benchmarks/) for one or more families, e.g. ``bench/results/dam_study/davit_tiny``
(extract its ``results.tar.xz`` there first).
One row per family and method:

- mean test AUC over the five diseases with its 95% bootstrap CI, for the three seeds' averaged
  predictions (``summary.csv``);
- the mean and standard deviation over the seeds of each seed's own mean test AUC (``seeds.csv``);
- the paired difference against CE at equal compute, with its 95% CI and p (``comparison.csv``:
  with several seeds a bootstrap over seeds, then patients), and the difference against the
  warm-up (the write-up's comparison);
- the rate chosen on seed 0's val for each disease, in ``diseases`` order, and the rates its
  searches tried, grown grids included (``diagnostics.csv``);
- chosen fine-tunes that trained (moved off step 0 and their backbone by at least 0.005), of all
  seeds', with the median backbone drift of the chosen models;
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

from deepauc.evaluation.summary import image_rows

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
    summary = image_rows(pd.read_csv(results / "summary.csv"))
    seeds = pd.read_csv(results / "seeds.csv")
    comparison = pd.read_csv(results / "comparison.csv")
    diagnostics = pd.read_csv(results / "diagnostics.csv")
    rows = []
    # The architectures that were fine-tuned (not the ensembles of them)
    fine_tuned = set(diagnostics["architecture"])
    for arch in [a for a in summary.architecture.unique() if a in fine_tuned]:
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
    mean = comparison.query("architecture == @arch and method == @method and disease == 'mean'")
    ce, warmup = mean[mean.control == "ce"], mean[mean.control == "warmup"]
    row = {"vs CE [95% CI]": "", "p": "", "vs warm-up": ""}
    if not ce.empty:
        found = ce.iloc[0]
        row["vs CE [95% CI]"] = (
            f"{found.delta:+.3f} [{found.delta_low:+.3f}, {found.delta_high:+.3f}]"
        )
        row["p"] = str(found.get("p_reported", f"{found.p_value:.3f}"))
    if not warmup.empty:
        row["vs warm-up"] = f"{warmup.delta.iloc[0]:+.3f}"
    return row


TUNING_COLUMNS = ("rates (seed 0)", "rates tried (seed 0)", "trained", "drift", "collapsed")


def tuning(diagnostics: pd.DataFrame, arch: str, method: str) -> dict:
    runs = diagnostics.query("architecture == @arch and method == @method")
    if runs.empty:  # the warm-up: no rate search
        return dict.fromkeys(TUNING_COLUMNS, "")
    first = runs[runs.seed == runs.seed.min()]
    rates = ", ".join(f"{rate:g}" for rate in first.chosen_lr)
    collapsed = int(runs.collapsed_rates.sum())
    tried = int(runs.rates_tried.sum())
    trained = int((runs.trained == "yes").sum())
    return {
        "rates (seed 0)": rates,
        "rates tried (seed 0)": str(int(first.rates_tried.sum())),
        "trained": f"{trained} of {len(runs)}",
        "drift": f"{runs.backbone_drift.median():.3f}",
        "collapsed": f"{collapsed} of {tried}",
    }


def job_minutes(benchmarks: Path, arch: str, method: str) -> str:
    if method == "warmup":
        files = list((benchmarks / "warmup" / arch).glob("*.tsv"))
    else:
        files = list((benchmarks / "finetune" / arch).glob(f"seed*/{method}/**/*.tsv"))
    seconds = sum(pd.read_csv(f, sep="\t").s.iloc[-1] for f in files)
    return f"{seconds / 60:.1f}"


if __name__ == "__main__":
    sys.exit(main())
