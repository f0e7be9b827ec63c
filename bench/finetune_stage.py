"""What a run's stages cost, from its own records: per stage (rule) the wall time from its first
job's start to its last job's end, the images trained per second over that window (all jobs
together), the GPU's busy share over it (from an ``nvidia-smi`` log), and per job its seconds,
peak host memory and peak GPU memory.

Read from a finished (or stopped) run folder: ``results/benchmarks/<rule>/...tsv`` (Snakemake's
per-job wall seconds and max RSS), ``results/logs/<rule>/...log`` (each job's last timestamp
and its "peak GPU memory" line) and the training histories (images per second x seconds of
each epoch row). bench/finetune_stage.sh runs a stage and calls this:

    python bench/finetune_stage.py --run bench/work/stage-convnext_tiny \\
        --gpu-log gpu.csv --network step_speed.json --out finetune_stage.json
"""

import argparse
import datetime
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from deepauc.atomic import atomic_path

TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
PEAK_GPU = re.compile(r"peak GPU memory ([\d.]+) GB")
STAGES = ("preprocess", "cache_images", "warmup", "finetune", "predict", "summarize")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="the run's working directory")
    parser.add_argument("--gpu-log", help="nvidia-smi --query-gpu=timestamp,utilization.gpu,...")
    parser.add_argument("--network", help="bench/step_speed.py's JSON from the same machine")
    parser.add_argument("--label", default="", help="a name for this measurement")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run = Path(args.run)
    gpu = read_gpu_log(args.gpu_log) if args.gpu_log else None
    network = json.loads(Path(args.network).read_text()) if args.network else {}
    report = {"label": args.label, "date": datetime.date.today().isoformat()}
    report["device"] = network.get("device", "")
    for stage in STAGES:
        jobs = stage_jobs(run, stage)
        if not jobs.empty:
            report[stage] = summarize(jobs, gpu)
    for arch, speeds in network.items():
        if isinstance(speeds, dict) and "network_eager_bs128" in speeds:
            report.setdefault("network_alone", {})[arch] = speeds
    with atomic_path(Path(args.out)) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


def read_gpu_log(path) -> pd.DataFrame:
    """nvidia-smi's CSV (timestamp, utilization.gpu [, memory.used]) without header or units."""
    table = pd.read_csv(path, header=None, skipinitialspace=True)
    table = table.rename(columns={0: "time", 1: "busy", 2: "memory_mib"})
    table["time"] = pd.to_datetime(table["time"], format="%Y/%m/%d %H:%M:%S.%f")
    table["busy"] = pd.to_numeric(table["busy"], errors="coerce")
    return table.dropna(subset=["busy"])


def stage_jobs(run: Path, stage: str) -> pd.DataFrame:
    """One row per job of ``stage``: start, end, seconds, max RSS, images trained, peak GPU."""
    rows = []
    benchmarks, logs = run / "results" / "benchmarks", run / "results" / "logs"
    found = sorted((benchmarks / stage).rglob("*.tsv"))
    if (benchmarks / f"{stage}.tsv").exists():  # a rule with one job
        found = [benchmarks / f"{stage}.tsv"]
    for tsv in found:
        key = (
            tsv.relative_to(benchmarks / stage).with_suffix("")
            if tsv.parent != benchmarks
            else Path()
        )
        log = logs / stage / key.with_suffix(".log") if key.parts else logs / f"{stage}.log"
        if not log.exists():
            continue
        bench = pd.read_csv(tsv, sep="\t").iloc[-1]
        end, peak_gpu = last_timestamp_and_peak(log)
        if end is None:  # a job that logged nothing: it ended when its log was last written
            end = pd.Timestamp(datetime.datetime.fromtimestamp(log.stat().st_mtime))
        seconds = float(bench["s"])
        rows.append(
            {
                "job": str(key),
                "start": end - pd.Timedelta(seconds=seconds),
                "end": end,
                "seconds": seconds,
                "max_rss_gb": float(bench["max_rss"]) / 1024,
                "peak_gpu_gb": peak_gpu,
                "images": trained_images(run, stage, key),
            }
        )
    return pd.DataFrame(rows)


def last_timestamp_and_peak(log: Path):
    end, peak = None, float("nan")
    for line in log.read_text(errors="replace").splitlines():
        stamp = TIMESTAMP.match(line)
        if stamp:
            end = pd.Timestamp(stamp.group(1).replace(",", "."))
        found = PEAK_GPU.search(line)
        if found:
            peak = float(found.group(1))
    return end, peak


def trained_images(run: Path, stage: str, key: Path) -> float:
    """Images a training job trained on: images/s x seconds summed over its epoch rows."""
    models = run / "results" / "models"
    if stage == "warmup":  # key: <arch>/seed<k>
        history = models / key / "warmup.history.csv"
    elif stage == "finetune":
        history = models / key.with_suffix(".history.csv")
    else:
        return 0.0
    if not history.exists():
        return float("nan")
    table = pd.read_csv(history)
    epochs = table[table["epoch"] > 0]
    # An epoch's row carries the epoch's images/s and seconds so far (eval_every_steps rows
    # too): the epoch's last row holds all of it.
    last = epochs.groupby("epoch").tail(1)
    return float((last["images_per_second"] * last["seconds"]).sum())


def summarize(jobs: pd.DataFrame, gpu: pd.DataFrame | None) -> dict:
    start, end = jobs["start"].min(), jobs["end"].max()
    wall = (end - start).total_seconds()
    summary = {
        "jobs": len(jobs),
        "wall_seconds": round(wall, 1),
        "job_seconds_mean": round(float(jobs["seconds"].mean()), 1),
        "job_seconds_max": round(float(jobs["seconds"].max()), 1),
        "peak_host_rss_gb_max": round(float(jobs["max_rss_gb"].max()), 2),
        "peak_gpu_gb_max": round(float(np.nanmax(jobs["peak_gpu_gb"])), 2)
        if jobs["peak_gpu_gb"].notna().any()
        else None,
    }
    images = float(jobs["images"].sum())
    if images > 0:
        summary["images_trained"] = round(images)
        summary["aggregate_images_per_s"] = round(images / wall, 1)
    if gpu is not None:
        window = gpu[(gpu["time"] >= start) & (gpu["time"] <= end)]
        if len(window):
            summary["gpu_busy"] = round(float(window["busy"].mean()) / 100, 3)
            summary["gpu_idle_samples"] = f"{int((window['busy'] == 0).sum())} of {len(window)}"
            if "memory_mib" in window:
                summary["gpu_memory_gb_max"] = round(float(window["memory_mib"].max()) / 1024, 1)
    return summary


if __name__ == "__main__":
    main()
