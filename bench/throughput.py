"""Training throughput per architecture: the model's own speed, the pipeline's, and the write-up's.

For each architecture, on one device, with the DAM fine-tune step (AUCMLoss + PESG, bf16 autocast
and channels_last on CUDA), this measures images per second of:

  (m) model alone, for context: forward, BCE, backward and torch's foreach SGD on one batch on
      the device: the speed the network itself allows, before LibAUC's loss and optimizer;

  (a) model bound: forward, loss, backward and optimizer step on one batch already on the device,
      prepared once (so the data path costs nothing);
  (b) pipeline: the real fine-tune job of ``deepauc.training.stages.finetune_job``, fed by its
      own loader (DualSampler over the memory-mapped uint8 cache, a few workers, pinned memory) with
      augmentation and normalisation on the device, epoch after epoch;
  (c) reference: the write-up's and LibAUC's data path feeding the same step: each sample's JPEG
      decoded with PIL and transformed with torchvision (resize, RandomAffine, normalise) in
      ``--reference-workers`` DataLoader workers.

(a) and (b) are measured for each of ``--implementations``: ``fast`` (the pipeline's default,
``deepauc.methods.fast_steps``: multi-tensor PESG, AUCM loss without host sync) and ``libauc``
(libauc's own classes), keys prefixed ``libauc_``, with the PESG step alone in
``optimizer_step_ms``; (c) feeds the fast step, so b/c compares the data paths alone. It then
measures (b) and (c) with the CE control's step (BCE + Adam) unless ``--skip-ce``. With
``--compile-archs`` it also measures (a) and (b) with ``compile: true`` (the network and the fast
step's arithmetic compiled).
The data are the pipeline's own synthetic CheXpert at CheXpert-small's 390 x 320 pixels,
preprocessed and cached by the pipeline's code. Results are printed and written as JSON.

Example (the numbers in docs/benchmarks.md)::

    python bench/throughput.py --out bench/results/h100.json

A smoke run on a CPU: ``python bench/throughput.py --device cpu --archs resnet10t --size 32
--batch-size 8 --steps 2 --warmup-steps 1 --patients 20 --workers 1 --reference-workers 1``.
"""

import argparse
import datetime
import json
import logging
import platform
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch
from PIL import Image
from timing import endless, images_per_second  # bench/, the script's own folder
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

from deepauc import DEFAULT_DISEASES
from deepauc.atomic import atomic_path
from deepauc.config.settings import AugmentSettings, FinetuneSettings
from deepauc.data.cache import build_cache
from deepauc.data.images import IMAGENET_MEAN, IMAGENET_STD, CachedSplit
from deepauc.data.preprocess import PreprocessSettings, prepare_splits
from deepauc.data.synth import DATASET_DIR, SynthSpec, generate_dataset
from deepauc.methods import DamSettings
from deepauc.models.build import create_model
from deepauc.models.checkpoints import save_model
from deepauc.training.fit import prepare_batch, train_step
from deepauc.training.runtime import Runtime
from deepauc.training.stages import finetune_job

log = logging.getLogger("throughput")
# (c) draws batches without DualSampler, so some lack positives: AUCMLoss warns, harmlessly.
warnings.filterwarnings("ignore", message="Input data has no positive sample")

WRITEUP_ARCHS = ["convnext_tiny", "densenet169", "swin_tiny_patch4_window7_224", "davit_tiny"]
DISEASE = "Pleural Effusion"  # the most prevalent of the five: DualSampler's rate is its own


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    runtime = Runtime.create(args.device, seed=0, threads=args.workers)
    with tempfile.TemporaryDirectory(prefix="deepauc-bench-") as scratch:
        data = make_data(Path(scratch), args)
        results = {
            "date": datetime.date.today().isoformat(),
            "device": device_name(runtime.device),
            "host": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
            "torch": torch.__version__,
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "data": data["summary"],
            "architectures": {},
        }
        for arch in args.archs:
            results["architectures"][arch] = measure_arch(arch, data, runtime, args)
            write(results, args.out)
    print_table(results)
    return results


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=WRITEUP_ARCHS)
    parser.add_argument("--compile-archs", nargs="*", default=[], help="also (b) compiled")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=150, help="timed steps of (b) and (c)")
    parser.add_argument("--bound-steps", type=int, default=60, help="timed steps of (a)")
    parser.add_argument("--warmup-steps", type=int, default=20, help="untimed steps first")
    parser.add_argument("--patients", type=int, default=3600, help="synthetic training patients")
    parser.add_argument("--workers", type=int, default=16, help="threads; loader workers <= 4")
    parser.add_argument("--reference-workers", type=int, default=16)
    parser.add_argument("--skip-ce", action="store_true", help="skip the CE step's (b) and (c)")
    parser.add_argument("--implementations", nargs="+", default=["fast", "libauc"])
    parser.add_argument("--skip-reference", action="store_true", help="skip (c)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/throughput.json"))
    return parser.parse_args(argv)


def make_data(root: Path, args) -> dict:
    """The synthetic CheXpert at 390 x 320, split and cached by the pipeline's own code."""
    started = time.perf_counter()
    spec = SynthSpec(n_train_patients=args.patients, n_valid_patients=50, image_size=(390, 320))
    generate_dataset(root, spec, workers=args.workers)
    generated = time.perf_counter()
    dataset = root / DATASET_DIR
    splits = prepare_splits(
        dataset / "train.csv",
        dataset / "valid.csv",
        root,
        DATASET_DIR,
        PreprocessSettings(workers=args.workers, val_fraction=0.05),
        require_scorable=False,  # nothing is scored here
    )
    cached = {}
    cache_started = time.perf_counter()
    for name in ("train", "val"):
        table = splits.table(name)
        path = root / f"{name}.npy"
        build_cache(table["image"].tolist(), args.size, path, workers=args.workers, label=name)
        cached[name] = CachedSplit(table, path)
    cache_seconds = time.perf_counter() - cache_started
    images = len(splits.train) + len(splits.val)
    summary = {
        "train_images": len(splits.train),
        "val_images": len(splits.val),
        "jpeg_size": [390, 320],
        "generate_seconds": round(generated - started, 1),
        "cache_seconds": round(cache_seconds, 1),
        "cache_images_per_second": round(images / cache_seconds, 1),
        "cache_bytes": int(sum(Path(s.cache).stat().st_size for s in cached.values())),
    }
    log.info("data: %s", summary)
    return {"root": root, "splits": cached, "summary": summary}


def measure_arch(arch: str, data: dict, runtime: Runtime, args) -> dict:
    warm = data["root"] / f"{arch}.warmup.pt"
    model = create_model(arch, 5, args.size)
    meta = {"arch": arch, "image_size": args.size, "outputs": list(DEFAULT_DISEASES)}
    save_model(warm, model.state_dict(), {**meta, "stage": "warmup"})
    row = {}
    for implementation in args.implementations:
        prefix = "" if implementation == "fast" else f"{implementation}_"
        job = make_job(warm, data, runtime, args, implementation=implementation)
        if not row:
            row["images_on_gpu"] = job.train_loader.dataset.on_device is not None
            row["parameter_tensors"] = len(list(job.model.parameters()))
            row["model_alone"] = model_alone(job, runtime, args)
        row[f"{prefix}model_bound"] = model_bound(job, runtime, args)
        row[f"{prefix}optimizer_step_ms"] = optimizer_step_ms(job, runtime, args)
        with PeakMemory() as memory:
            row[f"{prefix}pipeline"] = pipeline(job, runtime, args)
        row[f"{prefix}pipeline_over_model_alone"] = row[f"{prefix}pipeline"] / row["model_alone"]
        if not args.skip_reference:  # the write-up's data path feeding this step
            table = data["splits"]["train"].table
            row[f"{prefix}reference"] = reference(job, table, runtime, args)
            row[f"{prefix}pipeline_over_reference"] = (
                row[f"{prefix}pipeline"] / row[f"{prefix}reference"]
            )
        if implementation == "fast":
            row["pipeline_peak_rss_bytes"], row["pipeline_peak_pss_bytes"] = memory.rss, memory.pss
            row["pipeline_over_model_bound"] = row["pipeline"] / row["model_bound"]
        del job
        _release(runtime)
    if not args.skip_ce:
        job = make_job(warm, data, runtime, args, method="ce")
        row["ce_pipeline"] = pipeline(job, runtime, args)
        row["ce_reference"] = reference(job, data["splits"]["train"].table, runtime, args)
        row["ce_pipeline_over_reference"] = row["ce_pipeline"] / row["ce_reference"]
        del job
        _release(runtime)
    if arch in args.compile_archs:
        compiled_runtime = Runtime.create(args.device, seed=0, threads=args.workers, compile=True)
        job = make_job(warm, data, compiled_runtime, args)
        started = time.perf_counter()
        row["model_bound_compiled"] = model_bound(job, compiled_runtime, args)
        row["pipeline_compiled"] = pipeline(job, compiled_runtime, args)
        row["compile_and_measure_seconds"] = round(time.perf_counter() - started, 1)
        eager_bound = row.get("model_bound")
        if eager_bound:
            row["compiled_over_model_bound"] = row["pipeline_compiled"] / eager_bound
        del job
        _release(runtime)
    log.info("%s: %s", arch, {k: round(v, 3) for k, v in row.items()})
    return row


def _release(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()


def make_job(warm: Path, data: dict, runtime: Runtime, args, method="dam", implementation="fast"):
    splits = data["splits"]
    method_settings = None
    if method == "dam":
        method_settings = DamSettings(implementation=implementation)
    settings = FinetuneSettings(
        method=method, method_settings=method_settings, epochs=1, batch_size=args.batch_size
    )
    return finetune_job(
        warm, DISEASE, splits["train"], splits["val"], settings, AugmentSettings(), runtime
    )


def model_bound(job, runtime: Runtime, args) -> float:
    """(a): the step alone, on one prepared batch that stays on the device."""
    images, targets = next(iter(job.train_loader))
    inputs = prepare_batch(job, images, runtime)
    targets = targets.to(runtime.device)
    return images_per_second(
        lambda: train_step(job, inputs, targets, runtime),
        args.warmup_steps,
        args.bound_steps,
        len(images),
        runtime,
    )


def optimizer_step_ms(job, runtime: Runtime, args) -> float:
    """Milliseconds of one PESG step alone (gradients in place), as the GPU sees it."""
    images, targets = next(iter(job.train_loader))
    train_step(job, prepare_batch(job, images, runtime), targets.to(runtime.device), runtime)
    steps = max(args.bound_steps, 1)
    seconds = images_per_second(
        job.optimizer.step, 2, steps, 1, runtime
    )  # 1 "image" per step: steps/s
    return 1000 / seconds


def model_alone(job, runtime: Runtime, args) -> float:
    """(m): the network with BCE and torch's SGD, on one prepared batch on the device."""
    images, targets = next(iter(job.train_loader))
    inputs = prepare_batch(job, images, runtime)
    targets = targets.to(runtime.device)
    optimizer = torch.optim.SGD(job.model.parameters(), lr=1e-4, momentum=0.9, foreach=True)

    def step():
        with runtime.autocast():
            logits = job.model(inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return images_per_second(step, args.warmup_steps, args.bound_steps, len(images), runtime)


def pipeline(job, runtime: Runtime, args) -> float:
    """(b): the job's loader, augmentation and step, as ``deepauc.training.fit.fit`` runs them."""
    batches = endless(job.train_loader)

    def step():
        images, targets = next(batches)
        inputs = prepare_batch(job, images, runtime)
        train_step(job, inputs, targets.to(runtime.device, non_blocking=True), runtime)

    return images_per_second(step, args.warmup_steps, args.steps, args.batch_size, runtime)


def reference(job, table: pd.DataFrame, runtime: Runtime, args) -> float:
    """(c): PIL + torchvision per sample in workers, feeding the same step."""
    dataset = ReferenceImages(table, DISEASE, args.size)
    total = (args.warmup_steps + args.steps + 1) * args.batch_size
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=RandomSampler(dataset, replacement=True, num_samples=total),
        num_workers=args.reference_workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=True,
    )
    batches = iter(loader)
    channels_last = (
        torch.channels_last if runtime.device.type == "cuda" else torch.contiguous_format
    )

    def step():
        images, targets = next(batches)
        inputs = images.to(runtime.device, non_blocking=True).contiguous(
            memory_format=channels_last
        )
        train_step(job, inputs, targets.to(runtime.device, non_blocking=True), runtime)

    return images_per_second(step, args.warmup_steps, args.steps, args.batch_size, runtime)


class ReferenceImages(Dataset):
    """The write-up's data path, as LibAUC's ``libauc.datasets.CheXpert.__getitem__`` does it,
    with PIL and torchvision: decode the JPEG as gray, random affine at full resolution (gray
    fill 128), gray to RGB, resize, scale to [0, 1] and normalise; all per sample, on the CPU."""

    def __init__(self, table: pd.DataFrame, disease: str, size: int):
        self.paths = table["image"].tolist()
        self.labels = table[disease].fillna(0).to_numpy(dtype=np.float32)
        self.augment = v2.RandomAffine(
            degrees=15, translate=(0.05, 0.05), scale=(0.95, 1.05), fill=128
        )
        self.to_input = v2.Compose(
            [
                v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with Image.open(self.paths[index]) as image:
            gray = image.convert("L")
        rgb = self.augment(gray).convert("RGB")
        return self.to_input(rgb), torch.tensor([self.labels[index]])


class PeakMemory:
    """Peak resident (RSS) and proportional (PSS: shared pages split between their users) memory
    of this process and its children, sampled twice a second."""

    def __enter__(self):
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        me = psutil.Process()
        while True:
            rss = pss = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    info = process.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            if self._stop.wait(0.5):
                return


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def write(results: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")


def print_table(results: dict) -> None:
    print(f"\n{results['device']}, torch {results['torch']}, {results['date']}")
    columns = {
        "(m) alone": "model_alone",
        "(a) bound": "model_bound",
        "(b) pipeline": "pipeline",
        "(c) reference": "reference",
        "b/m": "pipeline_over_model_alone",
        "b/c": "pipeline_over_reference",
        "PESG step ms": "optimizer_step_ms",
        "libauc (a)": "libauc_model_bound",
        "libauc (b)": "libauc_pipeline",
        "libauc b/m": "libauc_pipeline_over_model_alone",
        "libauc PESG ms": "libauc_optimizer_step_ms",
        "libauc (c)": "libauc_reference",
        "compiled (a)": "model_bound_compiled",
        "compiled (b)": "pipeline_compiled",
        "compiled b / eager a": "compiled_over_model_bound",
        "CE (b)": "ce_pipeline",
        "CE (c)": "ce_reference",
    }
    print("| architecture | " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for arch, row in results["architectures"].items():
        cells = [_cell(row.get(key), key) for key in columns.values()]
        print(f"| {arch} | " + " | ".join(cells) + " |")


def _cell(value, key: str) -> str:
    if value is None:
        return ""
    if "_over_" in key:
        return f"{value:.2f}"
    if key.endswith("_ms"):
        return f"{value:.1f}"
    return f"{value:.0f}"


if __name__ == "__main__":
    main()
