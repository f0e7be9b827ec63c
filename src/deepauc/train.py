"""The two training stages and the one loop that runs them.

Stage 1 (``run_warmup``): a timm backbone learns all diseases at once with masked multi-label
binary cross-entropy and Adam. Stage 2 (``run_finetune``): per disease, the warm-up backbone gets
a fresh one-logit head and is fine-tuned either with LibAUC's AUCMLoss + PESG (``dam``) or, as the
control at equal compute, with BCE + Adam (``ce``); both draw batches with LibAUC's DualSampler.

``fit`` is the loop both use, readable top to bottom: forward, loss, backward, step, evaluation on
the val split, best-on-val selection, and a checkpoint each epoch holding everything needed to
continue. Rerunning an interrupted job resumes from its last finished epoch through the same code
path as a fresh start.
"""

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from libauc.losses import AUCMLoss
from libauc.optimizers import PESG
from libauc.sampler import DistributedDualSampler, DualSampler
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from deepauc.atomic import write_csv
from deepauc.checkpoints import load_model, save_model, save_torch
from deepauc.data import (
    AugmentSettings,
    CachedImages,
    CachedSplit,
    augment_generator,
    collate_batch,
    to_model_input,
)
from deepauc.errors import InputError
from deepauc.models import create_model, replace_head
from deepauc.stats import aucs_by_column

log = logging.getLogger(__name__)

METHODS = ("dam", "ce")
# A split's uint8 images go to GPU memory when they take at most this share of its free memory
# (CheXpert's training split at 224 px: 8.6 GB). Gathering a batch there costs no host work.
GPU_IMAGE_SHARE = 0.4


@dataclass(frozen=True)
class WarmupSettings:
    """Stage 1: multi-label BCE with Adam."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-5
    eval_every_steps: int = 0  # 0: evaluate once per epoch

    @classmethod
    def from_config(cls, section: dict) -> "WarmupSettings":
        """From the config's ``warmup`` section."""
        return cls(**section)


@dataclass(frozen=True)
class DamSettings:
    """LibAUC's AUCMLoss + PESG, at the defaults of its CheXpert recipe."""

    lr: float = 0.1
    margin: float = 1.0
    epoch_decay: float = 2e-3
    weight_decay: float = 1e-5
    loss_version: str = "v1"
    mode: str = "sgd"  # PESG's own update rule: "sgd" (momentum) or "adam"
    decay_factor: float = 10.0
    regularizer_epochs: tuple[int, ...] = (1,)  # update_regularizer after these epochs


@dataclass(frozen=True)
class CeSettings:
    """The control: BCE with Adam."""

    lr: float = 1e-4
    weight_decay: float = 1e-5


@dataclass(frozen=True)
class FinetuneSettings:
    """Stage 2, shared by both methods so that they run at equal compute."""

    epochs: int = 2
    batch_size: int = 32
    sampling_rate: float | str = "auto"
    eval_every_steps: int = 0
    dam: DamSettings = field(default_factory=DamSettings)
    ce: CeSettings = field(default_factory=CeSettings)

    @classmethod
    def from_config(cls, section: dict) -> "FinetuneSettings":
        """From the config's ``finetune`` section (its ``methods`` list is the workflow's)."""
        dam = {**section["dam"], "regularizer_epochs": tuple(section["dam"]["regularizer_epochs"])}
        shared = {k: v for k, v in section.items() if k not in ("dam", "ce", "methods")}
        return cls(**shared, dam=DamSettings(**dam), ce=CeSettings(**section["ce"]))


@dataclass(frozen=True)
class Runtime:
    """Where and how a job runs: chosen once, at the top."""

    device: torch.device
    seed: int = 0
    threads: int = 1
    compile: bool = False  # torch.compile the training forward and backward
    images_on_gpu: str = "auto"  # "auto": a split's images go to GPU memory when they fit
    rank: int = 0  # this process's DDP rank; rank 0 writes the job's files
    world_size: int = 1  # DDP processes of the job

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def loader_workers(self) -> int:
        # Workers only gather rows of the memory-mapped cache (decoding and augmentation are
        # done already or happen on the GPU): a few keep a GPU fed. On a CPU the same cores
        # also train, so gathering stays in the training process.
        if self.device.type == "cuda":
            return min(self.threads, 4)
        return 0

    @classmethod
    def create(
        cls,
        device: str = "auto",
        seed: int = 0,
        threads: int = 1,
        compile: bool = False,
        images_on_gpu: str = "auto",
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
    ) -> "Runtime":
        """Choose the device and set torch's CPU threads to the job's share. A DDP rank gets
        its own GPU: the ``local_rank``-th of those the job holds."""
        # Snakemake's --cores may exceed the machine's; more torch threads than cores only thrash.
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        chosen = choose_device(device)
        if chosen.type == "cuda" and world_size > 1:
            chosen = torch.device("cuda", local_rank)
            torch.cuda.set_device(chosen)
        runtime = cls(
            chosen,
            seed=seed,
            threads=max(1, min(threads, available)),
            compile=bool(compile),
            images_on_gpu=images_on_gpu,
            rank=rank,
            world_size=world_size,
        )
        torch.set_num_threads(runtime.threads)
        return runtime

    def share_of(self, batch_size: int, key: str) -> int:
        """Each rank's part of a global batch: the batch, and so the compute per step, stays
        what the config says whatever the number of processes."""
        if batch_size % self.world_size:
            raise InputError(
                f"batch size {batch_size} does not split evenly over {self.world_size} DDP "
                "processes",
                where=f"config key {key}",
                fix=f"use a multiple of {self.world_size} (or another processes_per_job).",
            )
        return batch_size // self.world_size

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def choose_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` and ``cpu`` are taken as asked."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device: cuda was asked for but torch sees no GPU",
            where="config key device",
            fix="set device: auto (or cpu), or run on a machine with a CUDA GPU.",
        )
    return torch.device(preference)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sampling_rate_for(labels: np.ndarray, setting: float | str) -> float:
    """DualSampler's share of positives per batch.

    ``auto`` follows LibAUC's advice (a rate slightly above the positive share): twice the
    training prevalence, kept within [0.1, 0.5]. Rare diseases then see a few positives in every
    batch, which AUCMLoss needs, without an epoch repeating each positive many times over.
    """
    if setting == "auto":
        return float(np.clip(2.0 * labels.mean(), 0.1, 0.5))
    return float(setting)


@dataclass
class Job:
    """What differs between stages; ``fit`` does the rest."""

    name: str
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader
    val_loader: DataLoader
    augment: AugmentSettings
    augment_generator: torch.Generator
    epochs: int
    eval_every_steps: int
    outputs: list[str]
    meta: dict
    settings: dict  # what, besides meta and inputs, makes a resume file reusable
    after_epoch: Callable[[int], None] = lambda epoch: None
    extra_state: nn.Module | None = None  # e.g. AUCMLoss's a, b, alpha
    sampler: DualSampler | None = None
    train_model: nn.Module | None = None  # ``model``, compiled when asked; shares its weights

    def __post_init__(self):
        if self.train_model is None:
            self.train_model = self.model


def warmup_job(
    arch: str,
    train: CachedSplit,
    val: CachedSplit,
    diseases: list[str],
    image_size: int,
    settings: WarmupSettings,
    augment: AugmentSettings,
    runtime: Runtime,
    pretrained: bool | str = False,
) -> Job:
    """Stage 1's model, loss, optimizer and loaders, ready for ``fit``."""
    seed_everything(runtime.seed)
    model = _on_device(create_model(arch, len(diseases), image_size, pretrained), runtime)
    train_images = train.images(diseases, image_size)
    batch_size = runtime.share_of(settings.batch_size, "warmup.batch_size")
    if runtime.distributed:  # each rank a disjoint share of every epoch's shuffle
        order = {
            "sampler": DistributedSampler(
                train_images,
                num_replicas=runtime.world_size,
                rank=runtime.rank,
                shuffle=True,
                seed=runtime.seed,
                drop_last=True,
            )
        }
    else:
        order = {"shuffle": True}
    train_loader = make_loader(
        train_images,
        runtime,
        batch_size=batch_size,
        drop_last=len(train_images) > settings.batch_size,
        generator=torch.Generator().manual_seed(runtime.seed),
        **order,
    )
    return Job(
        name=f"warmup {arch}",
        model=model,
        loss_fn=_masked_bce,
        optimizer=torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        ),
        train_loader=train_loader,
        val_loader=eval_loader(val.images(diseases, image_size), batch_size, runtime),
        augment=augment,
        augment_generator=augment_generator(runtime.device, runtime.seed + runtime.rank),
        epochs=settings.epochs,
        eval_every_steps=settings.eval_every_steps,
        outputs=list(diseases),
        meta={"arch": arch, "image_size": image_size, "outputs": list(diseases), "stage": "warmup"},
        settings={"stage": asdict(settings), "augment": asdict(augment)},
        train_model=_training_module(model, runtime),
    )


def run_warmup(
    arch: str,
    train: CachedSplit,
    val: CachedSplit,
    diseases: list[str],
    image_size: int,
    settings: WarmupSettings,
    augment: AugmentSettings,
    runtime: Runtime,
    checkpoint: str | os.PathLike,
    history: str | os.PathLike,
    pretrained: bool | str = False,
    inputs: list[str] = (),
) -> pd.DataFrame:
    """Stage 1. Writes the best-on-val model to ``checkpoint`` and per-epoch rows to ``history``."""
    job = warmup_job(arch, train, val, diseases, image_size, settings, augment, runtime, pretrained)
    return fit(job, runtime, Path(checkpoint), Path(history), inputs)


def finetune_job(
    warmup_checkpoint: str | os.PathLike,
    disease: str,
    method: str,
    train: CachedSplit,
    val: CachedSplit,
    settings: FinetuneSettings,
    augment: AugmentSettings,
    runtime: Runtime,
) -> Job:
    """Stage 2's model, loss, optimizer, sampler and loaders for one disease, ready for ``fit``."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", fix=f"use one of {', '.join(METHODS)}.")
    seed_everything(runtime.seed)
    model, warm = load_model(warmup_checkpoint, runtime.device)
    model = _on_device(replace_head(model, 1), runtime)
    image_size = warm["image_size"]
    train_images = train.images([disease], image_size, keep=train.table[disease].notna())
    labels = train_images.targets[:, 0]
    rate = sampling_rate_for(labels, settings.sampling_rate)
    batch_size = runtime.share_of(settings.batch_size, "finetune.batch_size")
    # DualSampler reseeds numpy's global generator: build it before anything else draws from it.
    # Under DDP, LibAUC's DistributedDualSampler draws the same global batches and hands each rank
    # every world_size-th image of them, so each rank sees its share of the positives.
    if runtime.distributed:
        sampler_class, batch_key = DistributedDualSampler, "batch_size_per_gpu"
    else:
        sampler_class, batch_key = DualSampler, "batch_size"
    sampler = sampler_class(
        train_images,
        labels=labels,
        sampling_rate=rate,
        random_seed=runtime.seed,
        **{batch_key: batch_size},
    )
    train_loader = make_loader(
        train_images,
        runtime,
        batch_size=batch_size,
        sampler=sampler,
        generator=torch.Generator().manual_seed(runtime.seed),
    )
    extra_state, after_epoch = None, lambda epoch: None
    if method == "dam":
        dam = settings.dam
        aucm = AUCMLoss(margin=dam.margin, version=dam.loss_version, device=runtime.device)
        optimizer = PESG(
            model.parameters(),
            loss_fn=aucm,
            lr=dam.lr,
            mode=dam.mode,
            margin=dam.margin,
            epoch_decay=dam.epoch_decay,
            weight_decay=dam.weight_decay,
            verbose=False,
            device=runtime.device,
        )

        def loss_fn(logits, targets):
            return aucm(torch.sigmoid(logits), targets).squeeze()

        def after_epoch(epoch):
            if epoch not in dam.regularizer_epochs:
                return
            if dam.epoch_decay > 0:
                optimizer.update_regularizer(decay_factor=dam.decay_factor)
            else:  # PESG keeps no reference weights then, and update_regularizer would fail
                optimizer.update_lr(decay_factor=dam.decay_factor)
            log.info(
                "after epoch %d: lr now %g%s",
                epoch,
                optimizer.param_groups[0]["lr"],
                ", reference weights updated" if dam.epoch_decay > 0 else "",
            )

        extra_state = aucm
    else:
        optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.ce.lr, weight_decay=settings.ce.weight_decay
        )
        loss_fn = F.binary_cross_entropy_with_logits
    log.info(
        "%s %s: %d train images (%d positive), sampling rate %.2f, %d batches an epoch",
        method,
        disease,
        len(train_images),
        int(labels.sum()),
        rate,
        sampler.num_batches,
    )
    method_settings = asdict(settings.dam if method == "dam" else settings.ce)
    return Job(
        name=f"{method} {warm['arch']} {disease}",
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        train_loader=train_loader,
        val_loader=eval_loader(val.images([disease], image_size), batch_size, runtime),
        augment=augment,
        augment_generator=augment_generator(runtime.device, runtime.seed + runtime.rank),
        epochs=settings.epochs,
        eval_every_steps=settings.eval_every_steps,
        outputs=[disease],
        meta={
            "arch": warm["arch"],
            "image_size": image_size,
            "outputs": [disease],
            "stage": method,
            "warmup_val_auc": warm.get("val_auc"),
            "sampling_rate": rate,
        },
        settings={
            "stage": {**asdict(settings), "dam": None, "ce": None, "method": method_settings},
            "augment": asdict(augment),
        },
        after_epoch=after_epoch,
        extra_state=extra_state,
        sampler=sampler,
        train_model=_training_module(model, runtime),
    )


def run_finetune(
    warmup_checkpoint: str | os.PathLike,
    disease: str,
    method: str,
    train: CachedSplit,
    val: CachedSplit,
    settings: FinetuneSettings,
    augment: AugmentSettings,
    runtime: Runtime,
    checkpoint: str | os.PathLike,
    history: str | os.PathLike,
    inputs: list[str] = (),
) -> pd.DataFrame:
    """Stage 2 for one disease with ``method`` ``dam`` or ``ce``; outputs as ``run_warmup``."""
    job = finetune_job(warmup_checkpoint, disease, method, train, val, settings, augment, runtime)
    return fit(job, runtime, Path(checkpoint), Path(history), inputs)


def prepare_batch(job: Job, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """A loader's uint8 batch as augmented model input on the job's device."""
    return to_model_input(images, runtime.device, job.augment, job.augment_generator)


def train_step(
    job: Job, model_input: torch.Tensor, targets: torch.Tensor, runtime: Runtime
) -> torch.Tensor:
    """One forward, loss, backward and optimizer step; returns the loss without waiting for it."""
    with runtime.autocast():
        logits = job.train_model(model_input)
    loss = job.loss_fn(logits.float(), targets)
    job.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    job.optimizer.step()
    return loss.detach()


def fit(
    job: Job,
    runtime: Runtime,
    checkpoint: Path,
    history_path: Path,
    inputs: list[str] = (),
) -> pd.DataFrame:
    """Train ``job`` for its epochs, keep the best-on-val weights, resume if interrupted.

    ``inputs`` are the files the job was built from: a resume file made from other versions of
    them (or from other settings) is not reused.
    """
    model = job.model
    fingerprint = _fingerprint(job.meta, job.settings, runtime, inputs)
    resume_path = checkpoint.with_name(checkpoint.name + ".resume")
    start_epoch, step, best, history = 1, 0, {"score": -math.inf, "epoch": 0, "state": None}, []
    resumed = _load_resume(resume_path, fingerprint, runtime.device)
    if resumed is not None:
        _restore(job, resumed, runtime)
        start_epoch, step = resumed["epoch"] + 1, resumed["step"]
        best, history = resumed["best"], resumed["history"]
        log.info("%s: resuming after epoch %d of %d", job.name, resumed["epoch"], job.epochs)

    for epoch in range(start_epoch, job.epochs + 1):
        model.train()
        if hasattr(job.train_loader.sampler, "set_epoch"):  # DDP samplers: a new order per epoch
            job.train_loader.sampler.set_epoch(epoch)
        started, seen, batch = time.perf_counter(), 0, 0
        loss_sum = torch.zeros((), device=runtime.device)
        steps = _batches_per_epoch(job)
        bar = tqdm(
            total=steps,
            desc=f"{job.name} epoch {epoch}/{job.epochs}",
            unit="batch",
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            disable=not runtime.is_main,
        )
        for batch, (images, targets) in enumerate(job.train_loader, 1):
            model_input = prepare_batch(job, images, runtime)
            targets = targets.to(runtime.device, non_blocking=True)
            loss_sum += train_step(job, model_input, targets, runtime)
            seen += len(images)
            step += 1
            bar.update()
            if batch % 50 == 0:  # reading the loss waits for the GPU: not every step
                rate = seen / (time.perf_counter() - started)
                bar.set_postfix(loss=f"{loss_sum.item() / batch:.4f}", img_s=f"{rate:.0f}")
            if job.eval_every_steps and step % job.eval_every_steps == 0:
                score, per_output = evaluate(job, runtime)
                best = _keep_best(best, score, epoch, model, runtime)
                history.append(
                    _history_row(
                        job, runtime, epoch, step, loss_sum, batch, score, per_output, started, seen
                    )
                )
                model.train()
        bar.close()
        score, per_output = evaluate(job, runtime)
        best = _keep_best(best, score, epoch, model, runtime)
        row = _history_row(
            job, runtime, epoch, step, loss_sum, batch, score, per_output, started, seen
        )
        history.append(row)
        job.after_epoch(epoch)
        log.info(
            "%s epoch %d/%d: train loss %.4f, val AUC %.4f, lr %.3g, %.1f s, %.0f images/s",
            job.name,
            epoch,
            job.epochs,
            row["train_loss"],
            score,
            row["lr"],
            row["seconds"],
            row["images_per_second"],
        )
        _save_resume(resume_path, job, runtime, fingerprint, epoch, step, best, history)

    table = pd.DataFrame(history)
    if not runtime.is_main:  # rank 0 writes the job's files
        return table
    if best["state"] is None:  # every val AUC undefined: keep the last weights
        best = {
            "score": float("nan"),
            "epoch": job.epochs,
            "state": copy.deepcopy(model.state_dict()),
        }
    meta = {**job.meta, "epoch": best["epoch"], "val_auc": best["score"], "seed": runtime.seed}
    save_model(checkpoint, best["state"], meta)
    write_csv(table, history_path)
    resume_path.unlink(missing_ok=True)
    log.info(
        "%s: best val AUC %.4f at epoch %d -> %s",
        job.name,
        best["score"],
        best["epoch"],
        checkpoint,
    )
    return table


def evaluate(job: Job, runtime: Runtime) -> tuple[float, list[float]]:
    """Mean val AUC over the job's outputs (ignoring undefined ones), and each output's AUC.

    Under DDP each rank scores every world_size-th image and all ranks get all scores, so they
    take the same best-on-val decisions.
    """
    scores = predict_probabilities(job.model, job.val_loader, runtime)
    if runtime.distributed:
        shares = [None] * runtime.world_size
        dist.all_gather_object(shares, scores)
        scores = np.empty((len(job.val_loader.dataset), scores.shape[1]), dtype=scores.dtype)
        for rank, share in enumerate(shares):
            scores[rank :: runtime.world_size] = share
    per_output = aucs_by_column(job.val_loader.dataset.targets, scores)
    defined = [a for a in per_output if not math.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), per_output


@torch.no_grad()
def predict_probabilities(model: nn.Module, loader: DataLoader, runtime: Runtime) -> np.ndarray:
    """Sigmoid scores of ``model`` for every image of ``loader``, in order: (images, outputs)."""
    model.eval()
    scores = []
    for images, _ in loader:
        count = len(images)
        if runtime.device.type == "cuda" and count < loader.batch_size:
            # A batch of a new size makes cuDNN's benchmark mode time every layer again
            # (tens of seconds for a DenseNet): pad the last one with copies instead.
            padding = images[-1:].expand(loader.batch_size - count, *images.shape[1:])
            images = torch.cat([images, padding])
        with runtime.autocast():
            logits = model(to_model_input(images, runtime.device))
        scores.append(torch.sigmoid(logits.float())[:count])
    return torch.cat(scores).cpu().numpy()  # one wait for the GPU, not one per batch


def eval_loader(images: CachedImages, batch_size: int, runtime: Runtime) -> DataLoader:
    """``images`` in order, for scoring; a DDP rank's share is every world_size-th of them."""
    share = range(runtime.rank, len(images), runtime.world_size) if runtime.distributed else None
    return make_loader(
        images,
        runtime,
        batch_size=batch_size,
        sampler=share,
        # Its own generator, so evaluating never moves the training random streams.
        generator=torch.Generator().manual_seed(0),
    )


def make_loader(images: CachedImages, runtime: Runtime, **options) -> DataLoader:
    """A DataLoader over ``images``, with the images in GPU memory when they fit there."""
    place_images(images, runtime)
    on_device = images.on_device is not None
    workers = 0 if on_device else runtime.loader_workers
    return DataLoader(
        images,
        num_workers=workers,
        collate_fn=collate_batch,
        # Pinned host memory lets the copy to the GPU run while the GPU computes.
        pin_memory=runtime.device.type == "cuda" and not on_device,
        persistent_workers=workers > 0,
        **({"prefetch_factor": 4} if workers else {}),
        **options,
    )


def place_images(images: CachedImages, runtime: Runtime) -> None:
    """Move ``images`` into GPU memory if the runtime allows it and they take at most
    ``GPU_IMAGE_SHARE`` of the free GPU memory; otherwise workers read them from the host."""
    if runtime.device.type != "cuda" or runtime.images_on_gpu == "never":
        return
    free, _ = torch.cuda.mem_get_info(runtime.device)
    gigabytes = images.nbytes / 1e9
    if images.nbytes > GPU_IMAGE_SHARE * free:
        log.info(
            "%d images (%.1f GB) stay in host memory: more than %.0f%% of the GPU's free %.1f GB",
            len(images),
            gigabytes,
            100 * GPU_IMAGE_SHARE,
            free / 1e9,
        )
        return
    started = time.perf_counter()
    images.move_to(runtime.device)
    log.info(
        "%d images (%.2f GB) copied to GPU memory in %.1f s",
        len(images),
        gigabytes,
        time.perf_counter() - started,
    )


def _masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE over the labels that are not ignored (NaN), averaged over those."""
    known = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none")
    return (losses * known).sum() / known.sum().clamp(min=1)


def _on_device(model: nn.Module, runtime: Runtime) -> nn.Module:
    model = model.to(runtime.device)
    if runtime.device.type == "cuda":
        # Tensor cores want NHWC; cuDNN picks the fastest kernels for our fixed batch shape.
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model


def _training_module(model: nn.Module, runtime: Runtime) -> nn.Module:
    """The module that trains: ``model`` itself, wrapped in DDP under several processes (which
    averages gradients over the ranks in backward), compiled with ``torch.compile`` if asked.

    Evaluation and checkpoints use ``model``: it shares the weights, and its state dict has no
    wrapper prefixes. BatchNorm statistics stay per rank (as in torchvision's reference DDP
    recipes); rank 0's running statistics are what DDP broadcasts and what is saved.
    """
    module = model
    if runtime.distributed:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        module = DistributedDataParallel(model, device_ids=device_ids)
    if not runtime.compile:
        return module
    log.info("compiling the model with torch.compile (the first steps take longer)")
    return torch.compile(module)


def _batches_per_epoch(job: Job) -> int:
    if job.sampler is not None:
        return job.sampler.num_batches
    return len(job.train_loader)


def _keep_best(best: dict, score: float, epoch: int, model: nn.Module, runtime: Runtime) -> dict:
    if not math.isnan(score) and score > best["score"]:
        # Only rank 0 saves the weights; the other ranks keep the score to decide alike.
        state = (
            {k: v.detach().clone() for k, v in model.state_dict().items()}
            if runtime.is_main
            else None
        )
        return {"score": score, "epoch": epoch, "state": state}
    return best


def _history_row(
    job, runtime, epoch, step, loss_sum, batches, score, per_output, started, seen
) -> dict:
    seconds = time.perf_counter() - started
    loss = loss_sum / max(batches, 1)
    if runtime.distributed:  # the mean over ranks, and images of all ranks
        loss = loss.clone()
        dist.all_reduce(loss)
        loss /= runtime.world_size
        seen *= runtime.world_size
    row = {
        "epoch": epoch,
        "step": step,
        "train_loss": loss.item(),
        "val_auc": score,
        "lr": job.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_second": seen / seconds if seconds else float("nan"),
    }
    if len(job.outputs) > 1:
        row.update(
            {f"val_auc:{name}": auc for name, auc in zip(job.outputs, per_output, strict=True)}
        )
    return row


def _fingerprint(meta: dict, settings: dict, runtime: Runtime, inputs) -> str:
    """What a resume file must match to be reused: the job's settings, its inputs' versions and
    its number of DDP processes (which decides who draws which images)."""
    stamps = []
    for path in inputs:
        stat = os.stat(path)
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    key = [meta, settings, runtime.seed, stamps]
    if runtime.distributed:
        key.append({"ddp_processes": runtime.world_size})
    payload = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _save_resume(path: Path, job: Job, runtime: Runtime, fingerprint, epoch, step, best, history):
    """Everything to continue after ``epoch``. Under DDP, rank 0 writes it with every rank's own
    random streams (augmentation, RNGs); the weights and optimizer are the same on all ranks."""
    own_streams = _random_streams(job)
    if runtime.distributed:
        streams = [None] * runtime.world_size
        dist.all_gather_object(streams, own_streams)
        if not runtime.is_main:
            return
    else:
        streams = [own_streams]
    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "step": step,
        "best": best,
        "history": history,
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "extra_state": job.extra_state.state_dict() if job.extra_state is not None else None,
        "sampler": _sampler_state(job.sampler),
        "loader_generator": job.train_loader.generator.get_state(),
        "streams": streams,
    }
    save_torch(state, path)


def _random_streams(job: Job) -> dict:
    return {
        "augment_generator": job.augment_generator.get_state(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }


def _load_resume(path: Path, fingerprint: str, device: torch.device) -> dict | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        log.warning("ignoring unreadable resume file %s (%s): starting over", path, err)
        return None
    if state.get("fingerprint") != fingerprint or "streams" not in state:
        log.warning("resume file %s is from other settings or inputs: starting over", path)
        return None
    return state


def _restore(job: Job, state: dict, runtime: Runtime) -> None:
    job.model.load_state_dict(state["model"])
    # PESG's load_state_dict consumes its argument: hand it a copy.
    job.optimizer.load_state_dict(copy.copy(state["optimizer"]))
    if job.extra_state is not None:
        job.extra_state.load_state_dict(state["extra_state"])
    if job.sampler is not None:
        for key, value in state["sampler"].items():
            setattr(job.sampler, key, value)
    job.train_loader.generator.set_state(state["loader_generator"].cpu())
    streams = state["streams"][runtime.rank]
    job.augment_generator.set_state(streams["augment_generator"].cpu())
    rng = streams["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def _sampler_state(sampler: DualSampler | None) -> dict | None:
    """DualSampler's position in its shuffled positives and negatives (numpy's global RNG is
    saved separately)."""
    if sampler is None:
        return None
    return {
        "pos_indices": sampler.pos_indices.copy(),
        "neg_indices": sampler.neg_indices.copy(),
        "pos_ptr": sampler.pos_ptr,
        "neg_ptr": sampler.neg_ptr,
    }
