"""The one training loop both stages and every method run, readable top to bottom.

``fit``: forward, loss, backward, step, evaluation on the val split at the configured cadence,
best-on-val selection, and a resume file each epoch holding everything needed to continue.
Rerunning an interrupted job resumes from its last finished epoch through the same code path
as a fresh start.
"""

import copy
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from deepauc.atomic import write_csv
from deepauc.data.images import to_model_input
from deepauc.errors import JobStopped
from deepauc.evaluation.diagnostics import (
    is_collapsed,
    score_diagnostics,
    sunk,
    tied_scores,
)
from deepauc.evaluation.stats import aucs_by_column
from deepauc.models.checkpoints import save_model
from deepauc.training.job import Job
from deepauc.training.preemption import StopRequest
from deepauc.training.resume import (
    fingerprint,
    load_resume,
    restore,
    restore_streams,
    resume_path,
    save_resume,
)
from deepauc.training.runtime import Runtime
from deepauc.training.scoring import predict_logits

log = logging.getLogger(__name__)


def prepare_batch(job: Job, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """A loader's uint8 batch as augmented model input on the job's device."""
    return to_model_input(images, runtime.device, job.augment, job.augment_generator)


def train_step(
    job: Job,
    model_input: torch.Tensor,
    targets: torch.Tensor,
    runtime: Runtime,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """One forward, loss, backward and optimizer step; returns the loss without waiting for it.
    ``index``: the batch's positions among the training images, for a loss that takes them."""
    with runtime.autocast():
        logits = job.train_model(model_input)
    if index is None:
        loss = job.loss_fn(logits.float(), targets)
    else:
        loss = job.loss_fn(logits.float(), targets, index.to(targets.device, non_blocking=True))
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
    them (or from other settings) is not reused. SIGTERM or SIGINT stops the job after its
    current step with a resume file of that step (:mod:`deepauc.training.preemption`), and
    raises :class:`~deepauc.errors.JobStopped`; a rerun continues from that step.
    """
    model = job.model
    key = fingerprint(job.meta, job.settings, runtime, inputs)
    resume_file = resume_path(checkpoint)
    order = job.train_loader.sampler  # an EpochOrder: the order of the epoch in progress
    start_epoch, step, best, history = 1, 0, {"score": -math.inf, "epoch": 0, "state": None}, []
    saved_step, stopped = None, None  # the step the resume file holds; a stopped epoch's state
    resumed = load_resume(resume_file, key, runtime.device)
    if resumed is not None:
        restore(job, resumed)
        start_epoch, step = resumed["epoch"] + 1, resumed["step"]
        best, history, saved_step = resumed["best"], resumed["history"], resumed["step"]
        stopped = resumed.get("partial")
        if stopped is None:
            restore_streams(job, resumed, runtime)
            log.info("%s: resuming after epoch %d of %d", job.name, resumed["epoch"], job.epochs)
        else:
            log.info(
                "%s: resuming at step %d (epoch %d, after batch %d of %d)",
                job.name,
                step,
                start_epoch,
                stopped["batch"],
                _batches_per_epoch(job),
            )
    else:  # the starting model is a candidate too, scored like every later evaluation
        history.append(_evaluation_row(job, runtime, history, epoch=0, step=0))
        best = _keep_best(best, history[-1]["val_auc"], 0, model, runtime)

    with StopRequest() as stop:
        for epoch in range(start_epoch, job.epochs + 1):
            if stop.agreed(runtime):  # asked between epochs: the last one's file is current
                if saved_step != step:
                    save_resume(resume_file, job, runtime, key, epoch - 1, step, best, history)
                raise _stopped(job, stop, step, epoch, 0, resume_file)
            model.train()
            order.set_epoch(epoch)
            if stopped is not None:  # the rest of the stopped epoch, in its order
                mine = resumed["streams"][runtime.rank]["partial"]
                order.continue_from(mine["order"], stopped["batch"] * job.train_loader.batch_size)
            batches = iter(job.train_loader)
            if stopped is not None:
                restore_streams(job, resumed, runtime)  # as they were when it stopped
                progress = EpochProgress(runtime, stopped, mine["loss_sum"])
                stopped = None
            else:
                progress = EpochProgress(runtime)
            steps = _batches_per_epoch(job)
            bar = tqdm(
                total=steps,
                initial=progress.batch,
                desc=f"{job.name} epoch {epoch}/{job.epochs}",
                unit="batch",
                file=sys.stderr,
                mininterval=1.0 if sys.stderr.isatty() else 30.0,
                disable=not runtime.is_main,
            )
            for images, targets, *index in batches:  # index: CachedImages.with_index
                model_input = prepare_batch(job, images, runtime)
                targets = targets.to(runtime.device, non_blocking=True)
                progress.loss_sum += train_step(
                    job, model_input, targets, runtime, index[0] if index else None
                )
                progress.seen += len(images)
                progress.batch += 1
                step += 1
                bar.update()
                batch = progress.batch
                if batch % 50 == 0:  # reading the loss waits for the GPU: not every step
                    bar.set_postfix(
                        loss=f"{progress.loss_sum.item() / batch:.4f}",
                        img_s=f"{progress.seen / progress.seconds():.0f}",
                    )
                # (the epoch's last step is evaluated just below, once)
                if job.eval_every_steps and step % job.eval_every_steps == 0 and batch < steps:
                    history.append(
                        _evaluation_row(job, runtime, history, epoch, step, progress.row())
                    )
                    best = _keep_best(best, history[-1]["val_auc"], epoch, model, runtime)
                    model.train()
                if stop.agreed(runtime, step):
                    bar.close()
                    part = progress.state(order.order)
                    save_resume(
                        resume_file, job, runtime, key, epoch - 1, step, best, history, part
                    )
                    raise _stopped(job, stop, step, epoch, batch, resume_file)
            bar.close()
            row = _evaluation_row(job, runtime, history, epoch, step, progress.row())
            history.append(row)
            best = _keep_best(best, row["val_auc"], epoch, model, runtime)
            job.after_epoch(epoch)
            log.info(
                "%s epoch %d/%d: train loss %.4f, val AUC %.4f, lr %.3g, %.1f s, %.0f images/s",
                job.name,
                epoch,
                job.epochs,
                row["train_loss"],
                row["val_auc"],
                row["lr"],
                row["seconds"],
                row["images_per_second"],
            )
            save_resume(resume_file, job, runtime, key, epoch, step, best, history)
            saved_step = step

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
    resume_file.unlink(missing_ok=True)
    log.info(
        "%s: best val AUC %.4f at epoch %d -> %s",
        job.name,
        best["score"],
        best["epoch"],
        checkpoint,
    )
    if runtime.device.type == "cuda":  # what a GPU shared by several jobs must hold for one
        log.info(
            "%s: peak GPU memory %.2f GB (reserved by this process)",
            job.name,
            torch.cuda.max_memory_reserved(runtime.device) / 1e9,
        )
    return table


def evaluate(job: Job, runtime: Runtime) -> tuple[float, list[float], np.ndarray]:
    """Mean val AUC over the job's outputs (ignoring undefined ones), each output's AUC, and the
    val scores (fp32 logits) they rank.

    Under DDP each rank scores every world_size-th image and all ranks get all scores, so they
    take the same best-on-val decisions.
    """
    scores = predict_logits(job.model, job.val_loader, runtime)
    if runtime.distributed:
        shares = [None] * runtime.world_size
        dist.all_gather_object(shares, scores)
        scores = np.empty((len(job.val_loader.dataset), scores.shape[1]), dtype=scores.dtype)
        for rank, share in enumerate(shares):
            scores[rank :: runtime.world_size] = share
    per_output = aucs_by_column(job.val_loader.dataset.targets, scores)
    defined = [a for a in per_output if not math.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), per_output, scores


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


class EpochProgress:
    """The epoch in progress: batches done, their summed loss (on the device: read only when
    needed), images seen and seconds spent; continued from a resume file's ``partial`` state
    when the epoch was stopped part-way (its seconds count the time before the stop)."""

    def __init__(self, runtime: Runtime, stopped: dict | None = None, loss_sum: float = 0.0):
        self.runtime = runtime
        self.batch = stopped["batch"] if stopped else 0
        self.seen = stopped["seen"] if stopped else 0
        self.loss_sum = torch.tensor(loss_sum, dtype=torch.float32, device=runtime.device)
        self.started = time.perf_counter() - (stopped["seconds"] if stopped else 0.0)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def state(self, order) -> dict:
        """What a resume file keeps of it: shared by the ranks, and each rank's own part."""
        return {
            "batch": self.batch,
            "seen": self.seen,
            "seconds": self.seconds(),
            "rank": {"order": order, "loss_sum": float(self.loss_sum.item())},
        }

    def row(self) -> dict:
        """The training side of a history row: mean loss since the epoch began, time,
        images/s (under DDP the mean loss over ranks, and the images of all ranks)."""
        seconds = self.seconds()
        loss, seen = self.loss_sum / max(self.batch, 1), self.seen
        if self.runtime.distributed:
            loss = loss.clone()
            dist.all_reduce(loss)
            loss /= self.runtime.world_size
            seen *= self.runtime.world_size
        return {
            "train_loss": loss.item(),
            "seconds": seconds,
            "images_per_second": seen / seconds if seconds else float("nan"),
        }


def _stopped(job: Job, stop: StopRequest, step: int, epoch: int, batch: int, path) -> JobStopped:
    """The stop after ``batch`` of ``epoch`` (0: before the epoch began)."""
    where = f"epoch {epoch}, batch {batch}" if batch else f"before epoch {epoch}"
    return JobStopped(
        f"{job.name}: stopped by {stop.name} after step {step} ({where}), its state saved in "
        f"{path}. Run the same command again to continue from step {step}.",
        stop.signum,
    )


def _spreads(job: Job, scores: np.ndarray):
    """(output, spread of its val probabilities: ``score_diagnostics``' ``score_std``)."""
    targets = job.val_loader.dataset.targets
    for i, name in enumerate(job.outputs):
        yield name, score_diagnostics(scores[:, i], targets[:, i])["score_std"]


def _evaluation_row(
    job: Job, runtime: Runtime, history: list[dict], epoch: int, step: int, training=None
) -> dict:
    """One history row: evaluate on val, add the job's diagnostics, and say so in the log when
    the scores tie or collapse."""
    score, per_output, scores = evaluate(job, runtime)
    ties = tied_scores(scores)
    row = {
        "epoch": epoch,
        "step": step,
        **(training or {"train_loss": float("nan"), "seconds": 0.0}),
        "val_auc": score,
        "lr": job.optimizer.param_groups[0]["lr"],
        "tied_scores": ties,
    }
    row.setdefault("images_per_second", float("nan"))
    if len(job.outputs) > 1:
        row.update(
            {f"val_auc:{name}": auc for name, auc in zip(job.outputs, per_output, strict=True)}
        )
        row.update({f"score_std:{name}": spread for name, spread in _spreads(job, scores)})
    if job.diagnose is not None:
        row.update(job.diagnose(scores[:, 0], job.val_loader.dataset.targets[:, 0]))
        start = history[0] if history else row
        row["collapsed"] = is_collapsed(row, start)
        row["sunk"] = sunk(row, start)
        if row["sunk"] and runtime.is_main:
            log.warning(
                "%s: SCORES SANK into the sigmoid's %s at step %d: mean val probability of "
                "positives %.4f, negatives %.4f (at step 0 %.4f, %.4f); val AUC %.4f",
                job.name,
                row["sunk"],
                step,
                row["pos_mean"],
                row["neg_mean"],
                start["pos_mean"],
                start["neg_mean"],
                score,
            )
        if row["collapsed"] and runtime.is_main:
            log.warning(
                "%s: COLLAPSE at step %d: val scores bunched up (%d distinct of %d, spread "
                "%.3g, at step 0 %.3g); val AUC %.4f",
                job.name,
                step,
                row["distinct_scores"],
                len(scores),
                row["score_std"],
                (history[0] if history else row)["score_std"],
                score,
            )
    if step == 0 and runtime.is_main:
        log.info("%s at step 0: val AUC %.4f, %d tied val scores", job.name, score, ties)
    elif ties and runtime.is_main:
        log.info("%s step %d: %d tied val scores", job.name, step, ties)
    return row
