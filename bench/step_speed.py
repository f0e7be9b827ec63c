"""A training step's speed on one GPU: the network alone, and the fine-tune step, eager or
replayed from a CUDA graph (``cuda_graphs``), or compiled (``compile: true``).

Per architecture, in images per second on a batch already in GPU memory (the data path is
measured by bench/finetune_stage.py, with the whole stage):

  network_eager_bs{B}   the timm model + BCE + torch's foreach SGD, bf16 autocast, channels_last:
                        the speed the network allows (at batch 128 the issue's reference)
  network_graphed_bs32  the same, its forward and backward from a CUDA graph
  {method}_{mode}_bs32  the pipeline's fine-tune step for a method (dam: FastAUCMLoss + FastPESG
                        in the architecture's PESG mode; ce: BCE + Adam; pauc: the sync-free
                        pAUC_DRO_Loss + SOPAs, pauc_libauc: libauc's own loss), augmentation of
                        a uint8 batch on the GPU included; mode eager, graphed or compiled
  compile_seconds       with --modes compiled: the first compiled step's seconds (the compile,
                        cold, or from the cache of TORCHINDUCTOR_CACHE_DIR)

    python bench/step_speed.py --archs convnext_tiny densenet169 --out step_speed.json
    python bench/step_speed.py --archs convnext_tiny --modes compiled --out compiled.json
    python bench/step_speed.py --methods ce pauc pauc_libauc --network-batches --size 64 \
        --out pauc.json

A CPU smoke run (no graphs; tiny): ``python bench/step_speed.py --device cpu --archs resnet10t
--size 32 --steps 2 --warmup-steps 1 --out /tmp/s.json``.
"""

import argparse
import datetime
import json
import logging
import platform
import sys
from pathlib import Path
from types import SimpleNamespace

import timm
import torch
import torch.nn.functional as F
from timing import first_call_seconds, images_per_second  # bench/, the script's own folder

from deepauc.atomic import atomic_path
from deepauc.config.settings import AugmentSettings
from deepauc.data.images import augment_generator, to_model_input
from deepauc.methods import METHODS, BuildContext
from deepauc.models.normalization import count_normalization, pesg_mode
from deepauc.training.fit import train_step
from deepauc.training.runtime import Runtime
from deepauc.training.stages import training_module

log = logging.getLogger("step_speed")
AUGMENT = AugmentSettings(rotation=15, translate=0.05, scale=(0.95, 1.05), hflip=False)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    device = torch.device(args.device)
    results = {"device": describe(device), "date": datetime.date.today().isoformat()}
    results["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    for arch in args.archs:
        row = results.setdefault(arch, {})
        for batch in args.network_batches:
            row[f"network_eager_bs{batch}"] = network_speed(arch, batch, False, args)
        if device.type == "cuda" and args.network_batches:
            row["network_graphed_bs32"] = network_speed(arch, 32, True, args)
        modes = [m for m in args.modes if device.type == "cuda" or m == "eager"]
        for method in args.methods:
            for mode in modes:
                speed, first = step_speed(arch, method, mode, args)
                row[f"{method}_{mode}_bs32"] = speed
                if mode == "compiled":
                    row[f"{method}_compile_seconds"] = first
        log.info("%s: %s", arch, json.dumps(row))
    with atomic_path(Path(args.out)) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=2) + "\n")
    return results


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=["convnext_tiny", "densenet169"])
    parser.add_argument("--methods", nargs="*", default=["dam", "ce"])
    parser.add_argument("--network-batches", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup-steps", type=int, default=15)
    parser.add_argument(
        "--modes", nargs="+", default=["eager", "graphed"], choices=["eager", "graphed", "compiled"]
    )
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def describe(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return (
        f"{name}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"timm {timm.__version__}"
    )


def new_model(arch: str, device: torch.device):
    model = timm.create_model(arch, pretrained=False, num_classes=1).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model.train()


def timed(step, steps: int, warmup_steps: int, batch: int, runtime: Runtime):
    """Images per second of ``step`` over ``steps`` calls after ``warmup_steps`` (the first of
    them timed alone: a compile or a graph's recording), and that first call's seconds."""
    first = first_call_seconds(step, runtime)
    speed = images_per_second(step, warmup_steps - 1, steps, batch, runtime)
    return round(speed, 1), round(first, 2)


def network_speed(arch: str, batch: int, graphed: bool, args) -> float:
    device = torch.device(args.device)
    model = new_model(arch, device)
    runtime = Runtime.create(args.device, cuda_graphs=graphed)
    shape = (batch, 3, args.size, args.size)
    images = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    targets = (torch.rand(batch, 1, device=device) < 0.5).float()
    job = SimpleNamespace(
        train_model=training_module(model, runtime, arch),
        loss_fn=F.binary_cross_entropy_with_logits,
        optimizer=torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=True),
    )
    speed, _ = timed(
        lambda: train_step(job, images, targets, runtime),
        args.steps,
        args.warmup_steps,
        batch,
        runtime,
    )
    return speed


def step_speed(arch: str, method_name: str, mode: str, args) -> tuple[float, float]:
    """The fine-tune step of ``method_name`` (as ``deepauc.training.fit`` runs it)."""
    device = torch.device(args.device)
    model = new_model(arch, device)
    runtime = Runtime.create(args.device, cuda_graphs=mode == "graphed", compile=mode == "compiled")
    method = METHODS[method_name.removesuffix("_libauc")]
    options = {"lr": 1e-4 if method_name in ("ce", "pauc", "pauc_libauc") else 1e-3}
    if method_name == "dam":
        options.update(mode=pesg_mode(count_normalization(model)), init_duals="zero")
    if method_name.startswith("pauc"):
        options["implementation"] = "libauc" if method_name.endswith("_libauc") else "fast"
    batch = 32
    context = BuildContext(
        device=device, log=log, start_scores=None, compile=runtime.compile, train_size=batch
    )
    recipe = method.build(model, method.settings(**options), context)
    job = SimpleNamespace(
        train_model=training_module(model, runtime, arch),  # graphed or compiled as a job's
        loss_fn=recipe.loss_fn,
        optimizer=recipe.optimizer,
    )
    generator = augment_generator(device, 0)
    index = torch.arange(batch, device=device) if recipe.uses_index else None
    pixels = torch.randint(0, 256, (batch, args.size, args.size), dtype=torch.uint8, device=device)
    targets = torch.zeros(batch, 1, device=device)
    targets[: batch // 4] = 1.0

    def step():
        model_input = to_model_input(pixels, device, AUGMENT, generator)
        train_step(job, model_input, targets, runtime, index)

    return timed(step, args.steps, args.warmup_steps, batch, runtime)


if __name__ == "__main__":
    main()
