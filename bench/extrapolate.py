"""From a measured benchmark run to CheXpert scale: wall time per stage, and GPU-hours on one GPU.

Reads what ``snakemake results/summary.csv --directory bench/work/dag --configfile
config/bench.yaml`` left in a results folder (Snakemake ``benchmark:`` files, training
histories, split tables) and the JSON of ``bench/throughput.py`` from the same GPU, and prints
two Markdown tables:

1. the measured run: wall seconds, images per second and peak memory of each stage;
2. the extrapolation to CheXpert (``--chexpert-images`` frontal training images, split as in the
   run) for each architecture of the throughput JSON: a training epoch's images scale with the
   data at the job's steady (last-epoch) rate, the fine-tune epochs keep the run's DualSampler
   oversampling per disease, per-job fixed costs (start-up, cuDNN's kernel timing, saving) stay
   as measured, and another architecture trains at the run's speed times the ratio of its
   pipeline throughput (b) to the run architecture's.

Example::

    python bench/extrapolate.py bench/work/dag/results bench/results/h100_eager.json
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from deepauc.atomic import atomic_path

CHEXPERT_FRONTAL_TRAIN = 191_027  # frontal rows of CheXpert-v1.0-small's train.csv


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results folder of the benchmark run")
    parser.add_argument("throughput", type=Path, help="bench/throughput.py JSON, same GPU")
    parser.add_argument("--chexpert-images", type=int, default=CHEXPERT_FRONTAL_TRAIN)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    run = measured_run(args.results)
    throughput = json.loads(args.throughput.read_text())
    print(stage_table(run))
    print()
    estimate = extrapolate(run, throughput, args.chexpert_images)
    print(estimate_table(estimate, args.chexpert_images))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"run": run, "chexpert": estimate}, indent=2) + "\n")


def measured_run(results: Path) -> dict:
    """Per stage of the run: wall seconds, training seconds and images, peak memory."""
    benchmarks = results / "benchmarks"
    if not benchmarks.is_dir():
        sys.exit(f"{benchmarks} not found: run the benchmark config first (see docs/benchmarks.md)")
    jobs = []
    for tsv in sorted(benchmarks.rglob("*.tsv")):
        row = pd.read_csv(tsv, sep="\t").iloc[0]
        parts = tsv.relative_to(benchmarks).parts
        stage = parts[0].removesuffix(".tsv")
        if stage == "finetune":  # finetune/{arch}/seed{seed}/{method}/{disease}.tsv
            stage = f"finetune {parts[3]}"
        job = {
            "stage": stage,
            "job": str(tsv.relative_to(benchmarks).with_suffix("")),
            "seconds": float(row["s"]),
            "max_rss_mb": _number(row.get("max_rss")),
            "max_pss_mb": _number(row.get("max_pss")),
        }
        history = _history_for(results, job["job"])
        if history is not None:
            seconds = history["seconds"].sum()
            images = (history["images_per_second"] * history["seconds"]).sum()
            job.update(
                train_seconds=float(seconds),
                train_images=float(images),
                epochs=len(history),
                steady_rate=float(history["images_per_second"].iloc[-1]),
            )
        jobs.append(job)
    train_images = len(pd.read_csv(results / "data" / "train.csv"))
    val_images = len(pd.read_csv(results / "data" / "val.csv"))
    caches = sorted((results / "data" / "cache").glob("*.npy"))
    cache_mb = {p.name: p.stat().st_size / 1e6 for p in caches}
    return {
        "jobs": jobs,
        "train_images": train_images,
        "val_images": val_images,
        "cache_mb": cache_mb,
        "arch": _arch_of(jobs),
    }


def stage_table(run: dict) -> str:
    jobs = pd.DataFrame(run["jobs"])
    grouped = jobs.groupby("stage", sort=False)
    table = pd.DataFrame(
        {
            "jobs": grouped.size(),
            "wall s": grouped["seconds"].sum(),
            "training s": grouped["train_seconds"].sum() if "train_seconds" in jobs else None,
            "images/s": (grouped["train_images"].sum() / grouped["train_seconds"].sum())
            if "train_images" in jobs
            else None,
            "last-epoch images/s": grouped["steady_rate"].mean() if "steady_rate" in jobs else None,
            "peak RSS MB": grouped["max_rss_mb"].max(),
            "peak PSS MB": grouped["max_pss_mb"].max(),
        }
    )
    lines = [
        f"Measured: {run['train_images']} train + {run['val_images']} val images, "
        f"architecture {run['arch']}; caches "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in run["cache_mb"].items()),
        "",
        "| stage | jobs | wall s | training s | images/s | last-epoch images/s | peak RSS MB "
        "| peak PSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage, row in table.iterrows():
        cells = [stage, f"{row['jobs']:.0f}", f"{row['wall s']:.1f}"]
        keys = ("training s", "images/s", "last-epoch images/s", "peak RSS MB", "peak PSS MB")
        for key in keys:
            value = row[key]
            cells.append("" if pd.isna(value) or value == 0 else f"{value:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| total | {len(jobs)} | {jobs['seconds'].sum():.1f} | | | | | |")
    return "\n".join(lines)


def extrapolate(run: dict, throughput: dict, chexpert_images: int) -> dict:
    """GPU-seconds per architecture at CheXpert scale (see the module docstring).

    A job's last epoch gives its steady rate (its first also pays cuDNN's kernel timing); what
    the epochs took beyond their images at that rate, plus start-up and saving, is a fixed cost
    per job that does not grow with the data.
    """
    jobs = [j for j in run["jobs"] if "train_seconds" in j]
    scale = chexpert_images / (run["train_images"] + run["val_images"])
    rates = {a: row["pipeline"] for a, row in throughput["architectures"].items()}
    base = rates.get(run["arch"])
    if base is None:
        sys.exit(f"{run['arch']} is not in the throughput JSON: measure it there too")
    fixed = sum(j["seconds"] - j["train_images"] / j["steady_rate"] for j in jobs)
    work = sum(j["train_images"] / j["steady_rate"] for j in jobs)  # seconds at steady rates
    predict = sum(j["seconds"] for j in run["jobs"] if j["stage"] == "predict")
    estimate = {}
    for arch, rate in rates.items():
        slowdown = base / rate
        training = work * scale * slowdown
        estimate[arch] = {
            "gpu_hours": (training + fixed + predict * slowdown) / 3600,
            "training_hours": training / 3600,
            "pipeline_images_per_second": rate,
        }
    estimate["all"] = {"gpu_hours": sum(e["gpu_hours"] for e in estimate.values())}
    estimate["assumptions"] = {
        "scale": scale,
        "fixed_seconds_per_architecture": fixed,
        "predict_seconds_per_architecture": predict,
    }
    return estimate


def estimate_table(estimate: dict, chexpert_images: int) -> str:
    lines = [
        f"CheXpert scale ({chexpert_images:,} frontal training images, split as in the run, "
        "warm-up + 5 diseases x 2 methods, epochs as in the run):",
        "",
        "| architecture | pipeline images/s (b) | GPU-hours |",
        "|---|---|---|",
    ]
    for arch, row in estimate.items():
        if arch in ("all", "assumptions"):
            continue
        rate, hours = row["pipeline_images_per_second"], row["gpu_hours"]
        lines.append(f"| {arch} | {rate:.0f} | {hours:.2f} |")
    lines.append(f"| all architectures | | {estimate['all']['gpu_hours']:.2f} |")
    return "\n".join(lines)


def _history_for(results: Path, job: str) -> pd.DataFrame | None:
    parts = Path(job).parts
    if parts[0] == "warmup":  # warmup/{arch}/seed{seed}
        path = results / "models" / parts[1] / parts[2] / "warmup.history.csv"
    elif parts[0] == "finetune":  # finetune/{arch}/seed{seed}/{method}/lr{rate}/{disease}
        path = results / "models" / Path(*parts[1:-1]) / f"{parts[-1]}.history.csv"
    else:
        return None
    if not path.exists():
        return None
    history = pd.read_csv(path)
    # epoch rows only: the step-0 and mid-epoch evaluation rows train no images
    return history.dropna(subset=["images_per_second"]).query("seconds > 0")


def _arch_of(jobs: list[dict]) -> str | None:
    for job in jobs:
        if job["stage"] == "warmup":
            return Path(job["job"]).parts[1]
    return None


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


if __name__ == "__main__":
    main()
