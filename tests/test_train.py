"""Training on an easy signal: both stages learn, DAM really is LibAUC's, and resuming is exact."""

import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import libauc.losses
import libauc.optimizers
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import deepauc.methods.libauc_variants
import deepauc.training.fit as fit_module
import deepauc.training.loaders as loaders_module
from deepauc.config.settings import (
    AugmentSettings,
    FinetuneSettings,
    JobResources,
    SplitFiles,
    WarmupSettings,
    WarmupSpec,
    job_to_json,
)
from deepauc.data.cache import build_cache
from deepauc.data.images import CachedSplit
from deepauc.errors import JobStopped
from deepauc.jobs.launch import run_training
from deepauc.jobs.logs import logged_to
from deepauc.methods import METHODS
from deepauc.models.checkpoints import load_model, safe_load
from deepauc.training.runtime import Runtime
from deepauc.training.stages import run_finetune, run_warmup

DISEASES = ["Cardiomegaly", "Edema"]
# The CUDA path (bf16 autocast, channels_last) is tested wherever a GPU is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ARCH = "resnet10t"
SIZE = 32


def _easy_split(folder, n, seed):
    """Noise images; Cardiomegaly adds a bright bar, Edema a bright square, each at random."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        labels = rng.random(2) < 0.35
        image = rng.normal(90, 25, size=(SIZE, SIZE))
        if labels[0]:
            y = rng.integers(4, SIZE - 8)
            image[y : y + 4, 4 : SIZE - 4] += 110
        if labels[1]:
            y, x = rng.integers(2, SIZE - 12, size=2)
            image[y : y + 10, x : x + 10] += 110
        path = folder / f"{i}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        rows.append(
            {"image": str(path), "patient": f"p{i}", "study": f"p{i}/s1", "view": "Frontal"}
        )
        rows[-1].update({d: int(v) for d, v in zip(DISEASES, labels, strict=True)})
    table = pd.DataFrame(rows)
    cache = folder.with_suffix(".npy")
    build_cache(table["image"].tolist(), SIZE, cache)
    return CachedSplit(table, cache)


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy")
    return _easy_split(root / "train", 192, 0), _easy_split(root / "val", 64, 1), root


@pytest.fixture(scope="module", params=DEVICES)
def warm(easy, request):
    train, val, root = easy
    runtime = Runtime.create(request.param, seed=0, threads=2)
    history = run_warmup(
        ARCH,
        train,
        val,
        DISEASES,
        SIZE,
        WarmupSettings(epochs=4, batch_size=16, lr=2e-3),
        AugmentSettings(rotation=0, translate=0, scale=(1, 1)),
        runtime,
        root / f"warmup-{request.param}.pt",
        root / f"warmup-{request.param}.history.csv",
    )
    return root / f"warmup-{request.param}.pt", history, request.param


def _finetune(easy, warm_path, method, out, epochs=2, device="cpu", **settings):
    train, val, _ = easy
    return run_finetune(
        warm_path,
        "Edema",
        train,
        val,
        FinetuneSettings(method=method, epochs=epochs, batch_size=16, **settings),
        AugmentSettings(),
        Runtime.create(device, seed=0, threads=2),
        out / f"{method}.pt",
        out / f"{method}.history.csv",
    )


def test_warmup_lowers_the_loss_and_learns_both_signals(warm):
    path, history, _ = warm
    loss = history["train_loss"].dropna()  # step 0 is scored before any training
    assert loss.iloc[-1] < loss.iloc[0]
    assert history["val_auc"].max() > 0.6
    assert list(history.columns[-4:]) == [
        "val_auc:Cardiomegaly",
        "val_auc:Edema",
        "score_std:Cardiomegaly",  # the fine-tunes' precondition (deepauc.training.stages)
        "score_std:Edema",
    ]
    model, meta = load_model(path)
    assert meta["outputs"] == DISEASES and meta["val_auc"] == pytest.approx(
        history["val_auc"].max()
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_finetune_learns_for_every_method(easy, warm, tmp_path, method):
    history = _finetune(easy, warm[0], method, tmp_path, epochs=3, device=warm[2])
    if method == "ce":  # AUCM is a min-max objective: its value need not fall as it learns
        loss = history["train_loss"].dropna()
        assert loss.iloc[-1] < loss.iloc[0]
    assert history["val_auc"].max() > 0.6
    model, meta = load_model(tmp_path / f"{method}.pt")
    assert meta["outputs"] == ["Edema"] and meta["stage"] == method
    assert model.get_classifier().out_features == 1


def test_dam_uses_libauc_loss_optimizer_and_sampler(easy, warm, tmp_path, monkeypatch):
    used = {"loss": 0, "step": 0, "regularizer": 0, "sampler": 0}

    # The default (implementation: fast) is libauc's classes with a multi-tensor step.
    assert issubclass(deepauc.methods.libauc_variants.FastAUCMLoss, libauc.losses.AUCMLoss)
    assert issubclass(deepauc.methods.libauc_variants.AnchoredFastPESG, libauc.optimizers.PESG)

    class SpyLoss(deepauc.methods.libauc_variants.FastAUCMLoss):
        def forward(self, *args, **kwargs):
            used["loss"] += 1
            return super().forward(*args, **kwargs)

    class SpyPESG(deepauc.methods.libauc_variants.AnchoredFastPESG):
        def step(self, *args, **kwargs):
            used["step"] += 1
            return super().step(*args, **kwargs)

        def update_regularizer(self, *args, **kwargs):
            used["regularizer"] += 1
            return super().update_regularizer(*args, **kwargs)

    class SpySampler(loaders_module.DualSampler):
        def __iter__(self):
            used["sampler"] += 1
            return super().__iter__()

    monkeypatch.setattr(deepauc.methods.libauc_variants, "FastAUCMLoss", SpyLoss)
    monkeypatch.setitem(
        deepauc.methods.libauc_variants._OPTIMIZERS, ("pesg", "start", "fast"), SpyPESG
    )
    monkeypatch.setattr(loaders_module, "DualSampler", SpySampler)
    history = _finetune(easy, warm[0], "dam", tmp_path, epochs=2, device=warm[2], sampling_rate=0.5)
    steps = int(history["step"].iloc[-1])
    assert used["step"] == steps > 0
    assert used["loss"] == steps
    assert used["sampler"] == 2  # one pass of the sampler per epoch
    assert used["regularizer"] == 1  # after epoch 1 only, as configured
    # step 0, then each epoch: the rate drops tenfold after epoch 1, as scheduled
    assert history["lr"].tolist() == pytest.approx([0.1, 0.1, 0.01])


def test_dam_batches_hold_the_sampling_rate_of_positives(easy, warm, tmp_path, monkeypatch):
    captured = {}
    real_loss = deepauc.methods.libauc_variants.FastAUCMLoss  # the default implementation's loss

    class CaptureLoss(real_loss):
        def forward(self, y_pred, y_true, **kwargs):
            captured.setdefault("positives", []).append(float(y_true.sum()))
            return super().forward(y_pred, y_true, **kwargs)

    monkeypatch.setattr(deepauc.methods.libauc_variants, "FastAUCMLoss", CaptureLoss)
    _finetune(easy, warm[0], "dam", tmp_path, epochs=1, sampling_rate=0.25)
    assert set(captured["positives"]) == {4.0}  # 25% of 16


# compositional: its loss alternates BCE and AUC steps by a counter, which must resume too
@pytest.mark.parametrize("stage", ["warmup", "dam", "compositional"])
def test_interrupted_run_resumes_at_epoch_two_with_identical_weights(
    easy, warm, tmp_path, monkeypatch, caplog, stage
):
    train, val, _ = easy

    def run(out):
        if stage == "warmup":
            return run_warmup(
                ARCH,
                train,
                val,
                DISEASES,
                SIZE,
                WarmupSettings(epochs=2, batch_size=16, lr=1e-3),
                AugmentSettings(),
                Runtime.create("cpu", seed=3, threads=2),
                out / "model.pt",
                out / "history.csv",
            )
        return run_finetune(
            warm[0],
            "Edema",
            train,
            val,
            FinetuneSettings(
                method=stage,
                method_settings=METHODS[stage].settings(lr=0.05),
                epochs=2,
                batch_size=16,
            ),
            AugmentSettings(),
            Runtime.create("cpu", seed=3, threads=2),
            out / "model.pt",
            out / "history.csv",
        )

    straight = run(tmp_path / "straight")

    save_resume = fit_module.save_resume

    def save_then_die(path, job, runtime, fingerprint, epoch, *rest):
        save_resume(path, job, runtime, fingerprint, epoch, *rest)
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(fit_module, "save_resume", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert (tmp_path / "resumed" / "model.pt.resume").exists()
    monkeypatch.setattr(fit_module, "save_resume", save_resume)

    with caplog.at_level(logging.INFO, logger="deepauc"):
        resumed = run(tmp_path / "resumed")
    assert "resuming after epoch 1 of 2" in caplog.text
    assert not (tmp_path / "resumed" / "model.pt.resume").exists()
    pd.testing.assert_frame_equal(
        straight.drop(columns=["seconds", "images_per_second"]),
        resumed.drop(columns=["seconds", "images_per_second"]),
    )
    a = safe_load(tmp_path / "straight" / "model.pt")["state_dict"]
    b = safe_load(tmp_path / "resumed" / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage", ["warmup", "dam", "compositional"])
def test_a_sigterm_saves_the_current_step_and_the_rerun_continues_there_with_identical_weights(
    easy, warm, tmp_path, monkeypatch, caplog, stage
):
    """As a scheduler's preemption or time limit does: SIGTERM mid-epoch. The job saves its
    state at that step and stops; the rerun continues from that step (stopped a second time,
    in the next epoch, it continues again) and ends with the weights of a run never stopped."""
    train, val, _ = easy

    def run(out):
        runtime = Runtime.create("cpu", seed=3, threads=2)
        if stage == "warmup":
            settings = WarmupSettings(epochs=2, batch_size=16, lr=1e-3)
            return run_warmup(
                ARCH, train, val, DISEASES, SIZE, settings, AugmentSettings(), runtime,
                out / "model.pt", out / "history.csv",
            )  # fmt: skip
        settings = FinetuneSettings(
            method=stage, method_settings=METHODS[stage].settings(lr=0.05), epochs=2,
            batch_size=16, eval_every_steps=4,
        )  # fmt: skip
        return run_finetune(
            warm[0], "Edema", train, val, settings, AugmentSettings(), runtime,
            out / "model.pt", out / "history.csv",
        )  # fmt: skip

    straight = run(tmp_path / "straight")
    per_epoch = int(straight.loc[straight["epoch"] == 1, "step"].max())
    real_step = fit_module.train_step

    def signal_at(stop_step):
        calls = {"n": 0}

        def step_then_signal(*args):
            loss = real_step(*args)
            calls["n"] += 1
            if calls["n"] == stop_step:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss

        return step_then_signal

    out = tmp_path / "stopped"
    monkeypatch.setattr(fit_module, "train_step", signal_at(5))
    with pytest.raises(JobStopped, match="stopped by SIGTERM after step 5 \\(epoch 1, batch 5"):
        run(out)
    assert (out / "model.pt.resume").exists() and not (out / "model.pt").exists()
    monkeypatch.setattr(fit_module, "train_step", signal_at(per_epoch - 5 + 3))  # epoch 2
    with caplog.at_level(logging.INFO, logger="deepauc"), pytest.raises(JobStopped):
        run(out)
    assert f"resuming at step 5 (epoch 1, after batch 5 of {per_epoch})" in caplog.text
    monkeypatch.setattr(fit_module, "train_step", real_step)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepauc"):
        resumed = run(out)
    assert f"resuming at step {per_epoch + 3} (epoch 2, after batch 3" in caplog.text
    assert not (out / "model.pt.resume").exists()
    pd.testing.assert_frame_equal(
        straight.drop(columns=["seconds", "images_per_second"]),
        resumed.drop(columns=["seconds", "images_per_second"]),
    )
    a = safe_load(tmp_path / "straight" / "model.pt")["state_dict"]
    b = safe_load(out / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_warmup_that_never_learns_says_so(easy, tmp_path, caplog, monkeypatch):
    """Its best val evaluation is step 0: every fine-tune would start from an untrained net."""
    import deepauc.training.stages as stages

    train, val, _ = easy
    learned = {"never": [0.61, 0.55, 0.60], "did": [0.61, 0.55, 0.70]}
    for case, aucs in learned.items():
        history = pd.DataFrame({"step": [0, 12, 24], "val_auc": aucs})
        monkeypatch.setattr(stages, "fit", lambda *args, history=history: history)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deepauc"):
            run_warmup(
                ARCH, train, val, DISEASES, SIZE, WarmupSettings(epochs=2, batch_size=16),
                AugmentSettings(), Runtime.create("cpu", seed=3, threads=2),
                tmp_path / "model.pt", tmp_path / "history.csv",
            )  # fmt: skip
        said = "warmup resnet10t: the warm-up never learned (best val AUC at step 0)"
        assert (said in caplog.text) == (case == "never"), case


def test_resume_file_from_other_settings_is_not_reused(easy, warm, tmp_path, caplog):
    out = tmp_path / "out"
    _finetune(easy, warm[0], "ce", out, epochs=1)
    (out / "ce.pt").rename(out / "ce.pt.resume")  # a stale file in the resume slot
    with caplog.at_level(logging.WARNING, logger="deepauc"):
        _finetune(easy, warm[0], "ce", out, epochs=1)
    assert "starting over" in caplog.text


def _ddp_spec(easy, out, batch_size) -> WarmupSpec:
    train, val, root = easy
    splits = {}
    for name, split in (("train", train), ("val", val)):
        table = root / f"{name}.csv"
        split.table.to_csv(table, index=False)
        splits[name] = SplitFiles(str(table), str(split.cache))
    return WarmupSpec(
        arch=ARCH,
        seed=0,
        **splits,
        diseases=tuple(DISEASES),
        image_size=SIZE,
        settings=WarmupSettings(epochs=2, batch_size=batch_size, lr=2e-3),
        augment=AugmentSettings(rotation=0, translate=0, scale=(1, 1)),
        checkpoint=str(out / "warmup.pt"),
        history=str(out / "warmup.history.csv"),
    )


def test_two_ddp_processes_learn_and_a_rank_error_reaches_the_log(easy, tmp_path):
    resources = JobResources(device="cpu", threads=2, gpus=0, processes=2)
    with logged_to(tmp_path / "ok.log"):
        run_training(_ddp_spec(easy, tmp_path, 16), resources)
    history = pd.read_csv(tmp_path / "warmup.history.csv")
    assert history["epoch"].tolist() == [0, 1, 2] and history["val_auc"].max() > 0.6
    ranks = "2 DDP ranks over gloo: rank 0 on cpu, rank 1 on cpu"  # (on GPUs: one GPU each)
    assert f"rank 0 INFO deepauc.jobs.launch: {ranks}" in (tmp_path / "ok.log").read_text()
    assert load_model(tmp_path / "warmup.pt")[1]["outputs"] == DISEASES

    # 15 images a step cannot be split over two processes: each rank says so, and the job fails
    # with one message pointing at them, not a traceback.
    with pytest.raises(SystemExit), logged_to(tmp_path / "bad.log"):
        run_training(_ddp_spec(easy, tmp_path / "bad", 15), resources)
    log = (tmp_path / "bad.log").read_text()
    assert "deepauc: error (rank 0): config key warmup.batch_size" in log
    assert "does not split evenly over 2 DDP processes" in log
    assert "DDP training failed: torchrun exited with status 1" in log
    assert not (tmp_path / "bad" / "warmup.pt").exists()


_DDP_JOB = """
import sys
from pathlib import Path
from deepauc.jobs.launch import run_training
from deepauc.jobs.logs import logged_to
from deepauc.config.settings import job_from_json
spec, resources = job_from_json(Path(sys.argv[1]).read_text())
with logged_to(sys.argv[2]):
    run_training(spec, resources)
"""


def test_sigterm_to_ddp_ranks_stops_them_at_one_agreed_step_and_the_rerun_continues(easy, tmp_path):
    """SIGTERM to the whole job (launcher, torchrun and both gloo ranks), as a scheduler sends
    it: the ranks agree on a step, rank 0 saves it with both ranks' streams, and the rerun
    continues from that step to the weights of a run never stopped."""

    def job(out: Path) -> list[str]:
        spec = dataclasses.replace(
            _ddp_spec(easy, out, 4), settings=WarmupSettings(epochs=2, batch_size=4, lr=2e-3)
        )
        (out).mkdir(parents=True, exist_ok=True)
        resources = JobResources(device="cpu", threads=2, gpus=0, processes=2)
        (out / "spec.json").write_text(job_to_json(spec, resources))
        return [sys.executable, "-c", _DDP_JOB, str(out / "spec.json"), str(out / "job.log")]

    straight = subprocess.run(job(tmp_path / "straight"), capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "stopped"
    command = job(out)
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    resume = out / "warmup.pt.resume"
    deadline = time.monotonic() + 300
    while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resume.exists(), "the DDP job never finished an epoch"
    os.killpg(process.pid, signal.SIGTERM)
    _, console = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, (process.returncode, console[-3000:])
    assert "DDP training stopped by SIGTERM" in console, console[-600:]
    log = (out / "job.log").read_text()
    stopped = re.findall(
        r"rank 0 WARNING deepauc: warmup resnet10t: stopped by SIGTERM after step (\d+)", log
    )
    assert stopped, log[-3000:]

    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (out / "job.log").read_text()
    assert f"resuming at step {stopped[0]} (epoch 2" in log or "resuming after epoch" in log
    a = safe_load(tmp_path / "straight" / "warmup.pt")["state_dict"]
    b = safe_load(out / "warmup.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
