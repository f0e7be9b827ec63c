"""Surrogate pretraining: starting weights that already rank, for machines without the model hub.

The GPU study "DAM vs CE at 224 px from a backbone that already ranks" (issue 44, item 3;
bench/dam_study_224.sh) starts its warm-ups from weights given by the config key
``pretrained: <folder>``. Without the hub's ImageNet weights this script makes them: each timm
architecture is trained from scratch (``pretrained=False``) on a SEPARATE synthetic cohort, of
other patients than the study's tree (``deepauc.data.synth`` drawn with ``--synth-seed``, default
1000; bench/chexpert_tree.py draws the study's tree with seed 0), on the multi-label task of the
five diseases (labels as the cohort's reports give them, uncertain and blank as 0), with BCE and
AdamW (cosine schedule after a 5% linear warm-up), the pipeline's augmentation and ImageNet
normalisation (``deepauc.data.images.to_model_input``), bf16 autocast and channels_last on CUDA.

    python bench/surrogate_pretrain.py --out study/224/surrogate \
        --architectures convnext_tiny densenet169 --images 20000 --epochs 4 --workers 16

Frontal views only (the pipeline's ``views``); the cohort's own valid split (one study per
patient, read by the "panel": less label noise) is held out and scored each epoch (ROC-AUC per
disease, sklearn). The last epoch's weights are kept (the held-out split reports, it selects
nothing). Images are rendered at ``--render-size`` and resized to ``--size`` through a JPEG
round trip (quality 90), as the study's tree is written, in memory (``--images`` x size^2 bytes).

Writes, atomically (temporary file + rename) per architecture:

- ``<out>/<arch>.safetensors``: the backbone's timm state dict, timm's own key names (no
  ``module.`` prefix) and no classifier (the layers ``reset_classifier(0)`` removes: timm drops
  a 1000-class head's keys anyway when it builds a model of other outputs, and the pipeline's
  warm-up starts its five-logit head at zero from pretrained weights). timm loads such a file
  with ``strict=False``, so a key it does not know would be skipped silently: every file is
  therefore loaded back through the pipeline's own ``deepauc.models.build.create_model(arch,
  5, size, pretrained=<out>)`` and compared tensor by tensor before it counts as written.
- ``<out>/<arch>.json``: the recipe, the cohort, the per-epoch history and the held-out AUCs.
"""

import argparse
import hashlib
import io
import json
import logging
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from deepauc.atomic import atomic_path
from deepauc.config.settings import AugmentSettings
from deepauc.data.images import augment_generator, to_model_input
from deepauc.data.labels import apply_policy
from deepauc.data.synth import SynthSpec, render_image
from deepauc.data.synth.cohort import sample_cohort
from deepauc.evaluation.stats import aucs_by_column
from deepauc.models.build import HeadInFp32, check_architectures, create_model
from deepauc.models.weights import check_pretrained
from deepauc.training.runtime import choose_device, seed_everything

DISEASES = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
log = logging.getLogger("surrogate")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of <arch>.safetensors")
    parser.add_argument("--architectures", nargs="+", required=True, help="timm model names")
    parser.add_argument("--images", type=int, default=20_000, help="frontal images rendered")
    parser.add_argument("--size", type=int, default=224, help="training side in pixels")
    parser.add_argument("--render-size", type=int, default=128, help="rendered side (resized)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    parser.add_argument("--synth-seed", type=int, default=1000, help="the cohort (not 0!)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--force", action="store_true", help="retrain existing weights")
    return parser.parse_args(argv)


def make_cohort(args) -> dict:
    """The surrogate cohort's frontal images (uint8, N x size x size) and 0/1 targets, by split.
    About 90% of ``--images`` to train (two studies a patient on average), the rest held out."""
    n_valid = max(32, args.images // 10)
    spec = SynthSpec(
        n_train_patients=max(2, round((args.images - n_valid) / 2)),
        n_valid_patients=n_valid,
        image_size=(args.render_size,) * 2,
        seed=args.synth_seed,
    )
    cohort = sample_cohort(spec, "surrogate")
    cohort = cohort[cohort["Frontal/Lateral"] == "Frontal"].reset_index(drop=True)
    rows = [(row, spec, args.size) for _, row in cohort.iterrows()]
    started = time.time()
    chunk = max(1, len(rows) // (8 * args.workers))
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            images = np.stack(list(pool.map(_render, rows, chunksize=chunk)))
    else:
        images = np.stack([_render(r) for r in rows])
    log.info("rendered %d frontal images in %.0f s", len(images), time.time() - started)
    targets = np.stack(
        [apply_policy(cohort[d], "zeros").to_numpy(dtype=np.float32) for d in DISEASES], 1
    )
    data = {}
    for split, name in (("train", "train"), ("valid", "held_out")):
        keep = (cohort["split"] == split).to_numpy()
        data[name] = (images[keep], targets[keep])
    data["spec"] = {**asdict(spec), "frontal_images": len(images)}
    return data


def _render(job) -> np.ndarray:
    row, spec, size = job
    image = Image.fromarray(render_image(row, spec))
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=spec.jpeg_quality)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L"), dtype=np.uint8)


def held_out_auc(model, images, targets, device, batch_size) -> list[float]:
    """ROC-AUC per disease on the held-out split (NaN where it has one class only)."""
    scorer = HeadInFp32(model).eval()  # bf16 logits tie; the head runs in fp32
    scores = []
    with torch.no_grad(), _autocast(device):
        for start in range(0, len(images), batch_size):
            batch = to_model_input(images[start : start + batch_size], device)
            scores.append(scorer(batch).float().cpu())
    scores = torch.cat(scores).numpy()
    model.train()
    return [float(a) for a in aucs_by_column(targets, scores)]


def _autocast(device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train(arch: str, data: dict, args, device) -> tuple[torch.nn.Module, list[dict]]:
    seed_everything(args.seed)
    model = create_model(arch, len(DISEASES), args.size, pretrained=False).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    images, targets = (torch.from_numpy(a).to(device) for a in data["train"])
    held_images = torch.from_numpy(data["held_out"][0]).to(device)
    steps_per_epoch = max(1, len(images) // args.batch_size)  # full batches only
    total = steps_per_epoch * args.epochs
    warm = max(1, total // 20)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * s / total)),
    )
    augment, generator = AugmentSettings(), augment_generator(device, args.seed)
    order = torch.Generator().manual_seed(args.seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    for epoch in range(1, args.epochs + 1):
        started, loss_sum = time.time(), torch.zeros((), device=device)
        permutation = torch.randperm(len(images), generator=order).to(device)
        for step in range(steps_per_epoch):
            index = permutation[step * args.batch_size : (step + 1) * args.batch_size]
            batch = to_model_input(images[index], device, augment, generator)
            with _autocast(device):
                logits = model(batch)
            loss = loss_fn(logits.float(), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
        seconds = time.time() - started
        aucs = held_out_auc(model, held_images, data["held_out"][1], device, args.batch_size)
        finite = [a for a in aucs if not math.isnan(a)]
        row = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / steps_per_epoch,
            "held_out_auc": {
                d: None if math.isnan(a) else a for d, a in zip(DISEASES, aucs, strict=True)
            },
            "held_out_mean_auc": float(np.mean(finite)) if finite else None,
            "seconds": round(seconds, 1),
            "images_per_s": round(steps_per_epoch * args.batch_size / seconds, 1),
        }
        history.append(row)
        log.info(
            "%s epoch %d/%d: train loss %.4f, held-out AUC %s (mean %s), %.0f images/s",
            arch, epoch, args.epochs, row["train_loss"],
            " ".join(f"{d.split()[-1][:5]} {a:.3f}" for d, a in zip(DISEASES, aucs, strict=True)),
            f"{row['held_out_mean_auc']:.3f}" if finite else "n/a",
            row["images_per_s"],
        )  # fmt: skip
    return model, history


def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without the classifier (the layers ``reset_classifier(0)`` removes), on
    the CPU, contiguous (safetensors stores no channels_last strides)."""
    model = model.cpu()
    model.reset_classifier(0)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def check_loads(arch: str, out: Path, state: dict, size: int) -> None:
    """Load ``out/<arch>.safetensors`` as the pipeline does (the dry run's header check, then
    the warm-up's ``create_model``) and refuse it unless every saved tensor arrived."""
    check_pretrained(str(out), [arch], None)
    loaded = create_model(arch, len(DISEASES), size, pretrained=str(out)).state_dict()
    missing = sorted(set(state) - set(loaded))
    differ = sorted(k for k in set(state) & set(loaded) if not torch.equal(state[k], loaded[k]))
    if missing or differ:
        raise SystemExit(
            f"{arch}: weights did not load: missing {missing[:5]}, differ {differ[:5]}"
        )
    left = sorted(set(loaded) - set(state))
    log.info("%s: loads through create_model (%d tensors equal; new: %s)", arch, len(state), left)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    device = choose_device(args.device)
    todo = [
        a for a in args.architectures if args.force or not (args.out / f"{a}.safetensors").is_file()
    ]
    if not todo:
        log.info("every architecture has its weights in %s (--force retrains)", args.out)
        return
    check_architectures(todo)  # an unknown name fails before rendering
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_cohort(args)
    log.info(
        "cohort (synth seed %d): %d train, %d held-out frontal images; train positives %s",
        args.synth_seed, len(data["train"][0]), len(data["held_out"][0]),
        dict(zip(DISEASES, data["train"][1].sum(0).astype(int).tolist(), strict=True)),
    )  # fmt: skip
    for arch in todo:
        started = time.time()
        model, history = train(arch, data, args, device)
        state = backbone_state(model)
        weights = args.out / f"{arch}.safetensors"
        with atomic_path(weights) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "architecture": arch})
        check_loads(arch, args.out, state, args.size)
        record = {
            "architecture": arch,
            "weights": weights.name,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "layout": "timm state dict, no classifier (reset_classifier(0)), fp32",
            "recipe": {
                "task": "multi-label BCE over " + ", ".join(DISEASES),
                "labels": "the cohort's reports; uncertain (-1) and blank as 0; frontal only",
                "optimizer": "AdamW, 5% linear warm-up then cosine to 0, last epoch kept",
                "augment": asdict(AugmentSettings()),
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "device": str(device),
                "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "fp32",
            },
            "cohort": data["spec"]
            | {"train_images": len(data["train"][0]), "held_out_images": len(data["held_out"][0])},
            "held_out_auc": history[-1]["held_out_auc"],
            "history": history,
            "seconds": round(time.time() - started, 1),
            "versions": {"torch": torch.__version__, "timm": timm.__version__},
        }
        with atomic_path(args.out / f"{arch}.json") as tmp:
            tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
        log.info("%s: wrote %s (%.0f s)", arch, weights, record["seconds"])


if __name__ == "__main__":
    main()
