"""Where a fine-tune step's time goes, on one GPU and as DDP ranks (docs/benchmarks.md, "Several
GPUs: where the time goes").

The pipeline's own fine-tune job (``deepauc.training.stages.finetune_job``: DualSampler loader,
augmentation on the GPU, loss, optimizer, DDP wrapper; the config's settings at the asked global
batch) runs ``--warmup-steps`` untimed steps (cuDNN's autotuning for the batch shape), then
``--steps`` timed steps, then ``--profile-steps`` under torch.profiler. Per architecture, global
batch, method and DDP variant, one row:

- ``ms_per_step`` and ``images_per_second`` (all ranks' images) of the timed steps;
- ``gpu_ms_per_step``: the time this rank's GPU computes (the union of the intervals of its
  kernels other than NCCL's, profiled steps), and ``gpu_busy`` = that / ``ms_per_step``. Far below
  1, the GPU waits for the CPU to issue the step's kernels;
- ``nccl_ms_per_step``: the NCCL kernels' time (gradient all-reduce, buffer broadcast). An NCCL
  kernel runs from its launch until the other rank's joins it, so this holds the wait for the
  slower rank too (and the profiler slows each rank unevenly): a sign, not the link's speed;
- with two ranks, ``allreduce_ms``: one all-reduce of a float32 buffer the size of the
  network's parameters, alone (the link's speed for the gradients' bytes).

DDP variants: ``default`` (the pipeline's wrapper) and ``no_buffer_broadcast``
(``broadcast_buffers=False``: no broadcast of the BatchNorm statistics before every forward).
``--compile``: the job as with the config's ``compile: true`` (network and the DAM update
compiled; the warm-up steps then hold the compilation).

    python bench/ddp_steps.py --work bench/work/multi_gpu --batches 64 128 256 --out one.json
    torchrun --standalone --nproc-per-node=2 bench/ddp_steps.py --work bench/work/multi_gpu \
        --batches 128 256 --variants default no_buffer_broadcast --out two.json
    python bench/ddp_steps.py --report one.json two.json   # the docs table

The work folder is one where ``bench/multi_gpu.sh`` ran (its split tables, image caches and
seed-0 warm-ups); the configs are the ones it ran with. ``--out`` is rewritten after every row, so
a run stopped by a time limit keeps what it measured.
"""

import argparse
import dataclasses
import datetime
import gc
import json
import logging
import os
import platform
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from markdown_table import markdown  # bench/, the script's own folder
from timing import endless, seconds_of  # bench/, the script's own folder
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from deepauc.config.layers import load_config
from deepauc.config.rates import lr_grid, resolve_pesg_modes
from deepauc.config.runs import image_cache, split_table, warmup_model
from deepauc.config.settings import (
    AugmentSettings,
    FinetuneSettings,
    finetune_params,
)
from deepauc.data.images import CachedSplit
from deepauc.jobs.launch import process_group
from deepauc.models.normalization import auto_modes
from deepauc.models.timm_index import INDEX_FOLDER
from deepauc.training.fit import prepare_batch, train_step
from deepauc.training.runtime import Runtime
from deepauc.training.stages import finetune_job

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [REPO / "config/multi_gpu.yaml"]  # extends config/bench.yaml
VARIANTS = {
    "default": {},
    "no_buffer_broadcast": {"broadcast_buffers": False},
}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        print(markdown(report([json.loads(Path(p).read_text()) for p in args.report])))
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    config = read_config(args.configs)
    runtime = Runtime.create(
        device=args.device or config["device"],
        threads=max(1, config["train_threads"] // world_size),
        compile=args.compile,
        images_on_gpu=config.get("images_on_gpu", "auto"),
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
    )
    with process_group(runtime):  # the pipeline's own, as a DDP job's ranks join it
        measure_all(args, config, runtime)


def measure_all(args, config: dict, runtime: Runtime) -> None:
    """Every architecture x batch x method (x DDP variant) of ``args``, each row written as it
    comes (a stopped run keeps what it measured)."""
    world_size = runtime.world_size
    work = args.work.resolve()
    # PESG's mode per architecture as the workflow resolves it (mode auto: from the network's
    # normalization, cached in the work folder's index).
    archs = args.archs or config["architectures"]
    config["finetune"], _ = resolve_pesg_modes(
        config["finetune"], archs, lambda names: auto_modes(names, work / INDEX_FOLDER)
    )
    splits = {
        name: CachedSplit(
            pd.read_csv(work / split_table(name)), work / image_cache(name, config["image_size"])
        )
        for name in ("train", "val")
    }
    rows = []
    for arch in archs:
        warmup = work / warmup_model(arch, config["seeds"][0])
        for batch in args.batches:
            for method in args.methods or config["finetune"]["methods"]:
                for variant in args.variants if world_size > 1 else ["default"]:
                    row = measure(
                        arch, batch, method, variant, warmup, splits, config, runtime, args
                    )
                    rows.append(row)
                    if runtime.is_main:
                        print(json.dumps(row), flush=True)
                        write(rows, runtime, args.out)
        if world_size > 1:
            link = allreduce_ms(rows[-1]["parameters"], runtime)
            for row in rows:
                if row["arch"] == arch:
                    row.setdefault("allreduce_ms", link)
            if runtime.is_main:
                write(rows, runtime, args.out)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench/work/multi_gpu")
    parser.add_argument("--configs", type=Path, nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--archs", nargs="+", help="default: the config's architectures")
    parser.add_argument("--methods", nargs="+", help="default: the config's methods")
    parser.add_argument("--batches", type=int, nargs="+", default=[128], help="global batches")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    parser.add_argument("--compile", action="store_true", help="as with compile: true")
    parser.add_argument("--disease", default="Pleural Effusion")
    parser.add_argument("--device", help="default: the config's device")
    parser.add_argument("--warmup-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile-steps", type=int, default=4)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, nargs="+", help="JSON files: print the table")
    return parser.parse_args(argv)


def read_config(paths: list[Path]) -> dict:
    """The configs as the workflow combines them (deepauc.config.layers): the first as the
    base, the rest as --configfile files, each ``extends:`` followed."""
    return load_config(*paths)


def measure(arch, batch, method, variant, warmup, splits, config, runtime, args) -> dict:
    section = {**config["finetune"], "batch_size": batch}
    rate = lr_grid(section, method, arch)[0]
    settings = FinetuneSettings.from_config(finetune_params(section, method, arch, rate), method)
    augment = AugmentSettings.from_config(config["augment"])
    # The variant's DDP options go to the pipeline's own DDP wrapper through the runtime.
    runtime = dataclasses.replace(runtime, ddp_options=VARIANTS[variant])
    job = finetune_job(
        warmup, args.disease, splits["train"], splits["val"], settings, augment, runtime
    )
    batches = endless(job.train_loader)
    job.train_model.train()

    def step():
        images, targets = next(batches)
        model_input = prepare_batch(job, images, runtime)
        train_step(job, model_input, targets.to(runtime.device, non_blocking=True), runtime)

    for _ in range(args.warmup_steps):
        step()
    seconds = seconds_of(step, args.steps, runtime)
    gpu_ms, nccl_ms = profiled(step, args.profile_steps, runtime)
    ms = 1000 * seconds / args.steps
    row = {
        "arch": arch,
        "method": method,
        "ranks": runtime.world_size,
        "global_batch": batch,
        "rank_batch": batch // runtime.world_size,
        "variant": variant,
        "compiled": runtime.compile,
        "ms_per_step": ms,
        "images_per_second": batch * args.steps / seconds,
        "gpu_ms_per_step": gpu_ms,
        "gpu_busy": gpu_ms / ms if gpu_ms == gpu_ms else float("nan"),
        "nccl_ms_per_step": nccl_ms,
        "parameters": sum(p.numel() for p in job.model.parameters()),
    }
    job = batches = None  # free the GPU memory before the next job
    gc.collect()
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def profiled(step, steps: int, runtime: Runtime) -> tuple[float, float]:
    """This rank's GPU compute time per step (any kernel but NCCL's running) and NCCL kernel
    time per step, in ms; NaN on a CPU."""
    if runtime.device.type != "cuda" or steps == 0:
        return float("nan"), float("nan")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        seconds_of(step, steps, runtime)
    try:
        kernels = [
            (event.time_range.start, event.time_range.end, event.name)
            for event in prof.events()
            if event.device_type == DeviceType.CUDA
        ]
    except (AttributeError, RuntimeError) as err:  # a profiler without these fields: no share
        logging.warning("no kernel times from the profiler: %s", err)
        return float("nan"), float("nan")
    nccl = sum(end - start for start, end, name in kernels if "nccl" in name.lower())
    compute = union_length([(s, e) for s, e, name in kernels if "nccl" not in name.lower()])
    return compute / 1000 / steps, nccl / 1000 / steps


def union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by ``intervals`` (overlaps, e.g. two streams, counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def allreduce_ms(parameters: int, runtime: Runtime, repeats: int = 10) -> float:
    """One all-reduce of ``parameters`` float32 values over the ranks, alone, in ms."""
    buffer = torch.ones(parameters, device=runtime.device)
    for _ in range(3):
        dist.all_reduce(buffer)
    return 1000 * seconds_of(lambda: dist.all_reduce(buffer), repeats, runtime) / repeats


def write(rows: list[dict], runtime: Runtime, path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"machine": machine(runtime), "rows": rows}, indent=1))
    partial.replace(path)


def machine(runtime: Runtime) -> dict:
    device = runtime.device
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "ranks": runtime.world_size,
        "backend": dist.get_backend() if runtime.distributed else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def report(runs: list[dict]) -> pd.DataFrame:
    """One row per architecture, method, global batch and variant: one GPU against two ranks
    (compiled against compiled)."""
    table = pd.DataFrame([row for run in runs for row in run["rows"]])
    # Rows without "compiled" come from this script's first version: uncompiled, and its GPU time
    # counted NCCL's kernels, which under DDP run on while waiting for the other rank.
    table["compiled"] = table.get("compiled", pd.Series(pd.NA, index=table.index))
    first_version = table["compiled"].isna()
    table["compiled"] = table["compiled"].fillna(False).astype(bool)
    table.loc[first_version & (table.ranks > 1), "gpu_busy"] = float("nan")
    one = table[table.ranks == 1].set_index(["arch", "method", "compiled", "global_batch"])
    rows = []
    for _, ddp in table[table.ranks > 1].iterrows():
        key = (ddp.arch, ddp.method, ddp.compiled, ddp.global_batch)
        whole = one.loc[key] if key in one.index else None
        half_key = (ddp.arch, ddp.method, ddp.compiled, ddp.rank_batch)
        half = one.loc[half_key] if half_key in one.index else None
        rows.append(
            {
                "architecture": ddp.arch,
                "method": ddp.method,
                "global batch": ddp.global_batch,
                "DDP variant": ddp.variant + (", compiled" if ddp.compiled else ""),
                "1 GPU ms/step": _f(whole, "ms_per_step"),
                "1 GPU busy": _f(whole, "gpu_busy", 2),
                "1 GPU at rank batch ms/step": _f(half, "ms_per_step"),
                "its busy": _f(half, "gpu_busy", 2),
                "2 ranks ms/step": f"{ddp.ms_per_step:.1f}",
                "rank busy": "-" if pd.isna(ddp.gpu_busy) else f"{ddp.gpu_busy:.2f}",
                "NCCL ms/step": f"{ddp.nccl_ms_per_step:.1f}",
                "all-reduce ms": f"{ddp.get('allreduce_ms', float('nan')):.1f}",
                "efficiency": _ratio(ddp.images_per_second, whole, 2),
                "batch factor": _ratio(None if half is None else half.images_per_second, whole, 1),
                "DDP factor": _ratio(ddp.images_per_second, half, 2),
            }
        )
    return pd.DataFrame(rows)


def _f(row, key: str, digits: int = 1) -> str:
    return "-" if row is None else f"{row[key]:.{digits}f}"


def _ratio(rate, row, scale: int) -> str:
    """``rate`` / (``scale`` x the row's images/s): efficiency (scale 2) or a factor."""
    if rate is None or row is None:
        return "-"
    return f"{rate / (scale * row['images_per_second']):.2f}"


if __name__ == "__main__":
    sys.exit(main())
