"""The two training stages, each built into a :class:`Job` for ``fit``.

Stage 1 (``run_warmup``): a timm backbone learns all diseases at once with masked multi-label
binary cross-entropy and Adam. Stage 2 (``run_finetune``): per disease, the warm-up backbone gets
a fresh one-logit head and is fine-tuned with one registered method (``deepauc.methods``: DAM,
the CE control, ...); every method draws batches with LibAUC's DualSampler, for the same epochs
and batches, so that they run at equal compute.

``run_spec`` runs a :class:`~deepauc.config.settings.WarmupSpec` or
:class:`~deepauc.config.settings.FinetuneSpec` as built by a rule script.
"""

import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from deepauc.config.settings import (
    AugmentSettings,
    FinetuneSettings,
    FinetuneSpec,
    SplitFiles,
    WarmupSettings,
    WarmupSpec,
)
from deepauc.data.images import CachedSplit, augment_generator
from deepauc.data.splits import few_cases
from deepauc.errors import InputError
from deepauc.evaluation.caution import untrained_warmup
from deepauc.evaluation.diagnostics import best_row, weak_warmup
from deepauc.methods import METHODS, BuildContext
from deepauc.models.build import create_model, init_head_from_row, replace_head, zero_head
from deepauc.models.checkpoints import load_model
from deepauc.training.fit import fit
from deepauc.training.graphs import GraphedTraining
from deepauc.training.job import Job
from deepauc.training.loaders import (
    dual_sampler,
    eval_loader,
    make_loader,
    place_images,
    sampling_rate_for,
    training_loader,
)
from deepauc.training.monitor import evaluation_diagnostics
from deepauc.training.runtime import Runtime, seed_everything
from deepauc.training.scoring import predict_logits

log = logging.getLogger(__name__)


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
    model = create_model(arch, len(diseases), image_size, pretrained)
    if head_starts_at_zero(settings.head_init, pretrained):
        zero_head(model)
    model = _on_device(model, runtime)
    train_images = place_images(train.images(diseases, image_size), runtime)
    batch_size = runtime.share_of(settings.batch_size, "warmup.batch_size")
    shuffle = None  # one process: a shuffle drawn from the loader's generator
    if runtime.distributed:  # each rank a disjoint share of every epoch's shuffle
        shuffle = DistributedSampler(
            train_images,
            num_replicas=runtime.world_size,
            rank=runtime.rank,
            shuffle=True,
            seed=runtime.seed,
            drop_last=True,
        )
    train_loader = training_loader(
        train_images,
        runtime,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(runtime.seed),
        sampler=shuffle,
        drop_last=len(train_images) > settings.batch_size,
    )
    val_images = place_images(val.images(diseases, image_size), runtime)
    return Job(
        name=f"warmup {arch}",
        model=model,
        loss_fn=masked_bce,
        optimizer=torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        ),
        train_loader=train_loader,
        val_loader=eval_loader(val_images, batch_size, runtime),
        augment=augment,
        augment_generator=augment_generator(runtime.device, runtime.seed + runtime.rank),
        epochs=settings.epochs,
        eval_every_steps=settings.eval_every_steps,
        outputs=list(diseases),
        meta={"arch": arch, "image_size": image_size, "outputs": list(diseases), "stage": "warmup"},
        settings={"stage": asdict(settings), "augment": asdict(augment)},
        train_model=training_module(model, runtime, f"warmup {arch}"),
    )


def head_starts_at_zero(head_init: str, pretrained: bool | str) -> bool:
    """Whether a warm-up's new head starts at zero (``warmup.head_init``): ``auto`` does from
    pretrained weights, where a random head could be the one the backbone was trained with."""
    return head_init == "zeros" or (head_init == "auto" and pretrained is not False)


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
    """Stage 1. Writes the best-on-val model to ``checkpoint`` and per-epoch rows to ``history``.
    A warm-up whose best val evaluation is step 0 never learned: the log says so (WARNING)."""
    job = warmup_job(arch, train, val, diseases, image_size, settings, augment, runtime, pretrained)
    table = fit(job, runtime, Path(checkpoint), Path(history), inputs)
    scored = table["val_auc"].notna().any()
    if runtime.is_main and scored and int(best_row(table)["step"]) == 0:
        log.warning(
            "%s: %s: no later evaluation beat the untrained model (val AUC %.4f), so every "
            "fine-tune of %s starts from it. Check warmup.lr (or warmup.overrides.%s) and the val "
            "split's positives in results/data/label_audit.csv",
            job.name,
            untrained_warmup(0),
            table["val_auc"].iloc[0],
            arch,
            arch,
        )
    if runtime.is_main and scored:
        _check_start(job.name, best_row(table), diseases)
    return table


def _check_start(name: str, best: pd.Series, diseases: list[str]) -> None:
    """The fine-tunes' precondition, checked before they run: the warm-up should rank each
    disease. Where it barely does, AUC-margin losses (margin 1.0 on probabilities that hardly
    differ) tend to sink the scores into the sigmoid's floor or collapse them; the console and
    the log say so now, and the fine-tunes' rows say what happened."""
    weak = weak_warmup(best, diseases)
    if not weak:
        return
    listed = "; ".join(f"{disease} ({why})" for disease, why in weak.items())
    log.warning(
        "%s: the warm-up barely ranks %s. Fine-tunes from it, AUC-margin ones most (DAM), tend "
        "to sink into the sigmoid's floor or collapse; results/diagnostics.csv and the summary's "
        "caution will say if they did. Starting weights that already rank (pretrained) or a "
        "longer warm-up (warmup.epochs) give them a start that ranks",
        name,
        listed,
        extra={"console": True},  # deepauc.jobs.logs: to the console too
    )


def finetune_job(
    warmup_checkpoint: str | os.PathLike,
    disease: str,
    train: CachedSplit,
    val: CachedSplit,
    settings: FinetuneSettings,
    augment: AugmentSettings,
    runtime: Runtime,
) -> Job:
    """Stage 2's model, loss, optimizer, sampler and loaders for one disease and the method of
    ``settings``, ready for ``fit``."""
    method = METHODS[settings.method]
    seed_everything(runtime.seed)
    model, warm = load_model(warmup_checkpoint, runtime.device)
    warm_head = model.get_classifier()
    model = replace_head(model, 1)
    if settings.head_init == "warmup":
        init_head_from_row(model, warm_head, _output_row(warm, disease, warmup_checkpoint))
    model = _on_device(model, runtime)
    image_size = warm["image_size"]
    train_images = train.images([disease], image_size, keep=train.table[disease].notna())
    train_images = place_images(train_images, runtime)
    labels = train_images.targets[:, 0]
    rate = sampling_rate_for(labels, settings.sampling_rate)
    batch_size = runtime.share_of(settings.batch_size, "finetune.batch_size")
    sampler = dual_sampler(train_images, labels, rate, batch_size, runtime)
    train_loader = training_loader(
        train_images,
        runtime,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(runtime.seed),
        sampler=sampler,
    )
    context = BuildContext(
        device=runtime.device,
        log=log,
        start_scores=lambda: _start_scores(model, train_images, batch_size, runtime),
        compile=runtime.compile,
        train_size=len(train_images),
    )
    recipe = method.build(model, settings.method_settings, context)
    train_images.with_index = recipe.uses_index
    log.info(
        "%s %s: %d train images (%d positive), sampling rate %.2f, %d batches an epoch, "
        "head from %s",
        method.name,
        disease,
        len(train_images),
        int(labels.sum()),
        rate,
        sampler.num_batches,
        "the warm-up" if settings.head_init == "warmup" else "random weights",
    )
    val_images = place_images(val.images([disease], image_size), runtime)
    val_labels = val_images.targets[:, 0]
    few = few_cases("val", int((val_labels == 1).sum()), int((val_labels == 0).sum()))
    if few and runtime.is_main:
        log.warning(
            "%s %s: %s: the val AUC that picks the model (and its rate) rests on few cases",
            method.name,
            disease,
            few,
        )

    def after_epoch(epoch: int) -> None:
        if epoch in settings.lr_decay_epochs:
            log.info("after epoch %d: %s", epoch, recipe.decay(settings.lr_decay_factor))

    return Job(
        name=f"{method.name} {warm['arch']} {disease}",
        model=model,
        loss_fn=recipe.loss_fn,
        optimizer=recipe.optimizer,
        train_loader=train_loader,
        val_loader=eval_loader(val_images, batch_size, runtime),
        augment=augment,
        augment_generator=augment_generator(runtime.device, runtime.seed + runtime.rank),
        epochs=settings.epochs,
        eval_every_steps=settings.eval_every_steps,
        outputs=[disease],
        meta={
            "arch": warm["arch"],
            "image_size": image_size,
            "outputs": [disease],
            "stage": method.name,
            "lr": settings.method_settings.lr,
            "warmup_val_auc": warm.get("val_auc"),
            "sampling_rate": rate,
        },
        settings={"stage": asdict(settings), "augment": asdict(augment)},
        after_epoch=after_epoch,
        extra_state=recipe.extra_state,
        sampler=sampler,
        train_model=training_module(model, runtime, f"{method.name} {warm['arch']} {disease}"),
        diagnose=evaluation_diagnostics(model, recipe, runtime),
    )


def run_finetune(
    warmup_checkpoint: str | os.PathLike,
    disease: str,
    train: CachedSplit,
    val: CachedSplit,
    settings: FinetuneSettings,
    augment: AugmentSettings,
    runtime: Runtime,
    checkpoint: str | os.PathLike,
    history: str | os.PathLike,
    inputs: list[str] = (),
) -> pd.DataFrame:
    """Stage 2 for one disease with the method of ``settings``; outputs as ``run_warmup``."""
    job = finetune_job(warmup_checkpoint, disease, train, val, settings, augment, runtime)
    return fit(job, runtime, Path(checkpoint), Path(history), inputs)


def run_spec(spec: WarmupSpec | FinetuneSpec, runtime: Runtime) -> pd.DataFrame:
    """Read the spec's split files and run its stage."""
    train, val = _read_split(spec.train), _read_split(spec.val)
    if isinstance(spec, WarmupSpec):
        return run_warmup(
            spec.arch,
            train,
            val,
            list(spec.diseases),
            spec.image_size,
            spec.settings,
            spec.augment,
            runtime,
            spec.checkpoint,
            spec.history,
            pretrained=spec.pretrained,
            inputs=list(spec.inputs),
        )
    return run_finetune(
        spec.warmup_checkpoint,
        spec.disease,
        train,
        val,
        spec.settings,
        spec.augment,
        runtime,
        spec.checkpoint,
        spec.history,
        inputs=list(spec.inputs),
    )


def _output_row(warm: dict, disease: str, checkpoint) -> int:
    if disease not in warm["outputs"]:
        raise InputError(
            f"the warm-up model has no output for {disease!r} (it has {warm['outputs']})",
            where=str(checkpoint),
            fix="rerun the warm-up with this disease in diseases, or set finetune.head_init: "
            "random.",
        )
    return warm["outputs"].index(disease)


#: Training images whose starting scores set the dual variables' first values.
START_SAMPLE = 2048


def _start_scores(model, images, batch_size: int, runtime: Runtime):
    """The starting model's sigmoid scores and labels on up to ``START_SAMPLE`` training images,
    drawn with a generator of their own (the training random streams do not move)."""
    picked = np.random.default_rng(runtime.seed).permutation(len(images))[:START_SAMPLE]
    loader = make_loader(
        images, runtime, batch_size=batch_size, sampler=sorted(picked.tolist()), shuffle=False
    )
    scores = torch.sigmoid(torch.from_numpy(predict_logits(model, loader, runtime)[:, 0]))
    return scores.to(runtime.device), torch.from_numpy(images.targets[np.sort(picked), 0]).to(
        runtime.device
    )


def _read_split(files: SplitFiles) -> CachedSplit:
    return CachedSplit(pd.read_csv(files.table), files.cache)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
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


def training_module(model: nn.Module, runtime: Runtime, name: str) -> nn.Module:
    """The module that trains: ``model`` itself, wrapped in DDP under several processes (which
    averages gradients over the ranks in backward), replayed from a CUDA graph in one process on
    a GPU (``cuda_graphs``), compiled with ``torch.compile`` if asked.

    Evaluation and checkpoints use ``model``: it shares the weights, and its state dict has no
    wrapper prefixes. BatchNorm statistics stay per rank (as in torchvision's reference DDP
    recipes); rank 0's running statistics are what DDP broadcasts and what is saved.
    """
    module = model
    if runtime.distributed:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        module = DistributedDataParallel(model, device_ids=device_ids, **runtime.ddp_options)
    if runtime.cuda_graphs:  # one process on a GPU: see deepauc.training.graphs
        return GraphedTraining(model, name)
    if not runtime.compile:
        return module
    log.info("compiling the model with torch.compile (the first steps take longer)")
    return torch.compile(module)
