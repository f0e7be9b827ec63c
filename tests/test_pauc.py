"""Partial-AUC maximization as we run it against libauc's own: pAUC_DRO_Loss + SOPAs, the same
updates step for step; where ours differs on purpose (the per-positive state survives a resume,
the reference weights start at the starting model); and the job feeding it sample indices."""

import copy

import pytest
import torch
from libauc.losses import pAUC_DRO_Loss
from libauc.optimizers import SOPAs

from deepauc.config.settings import AugmentSettings, FinetuneSettings
from deepauc.methods import PaucSettings
from deepauc.methods.libauc_variants import (
    AnchoredSOPAs,
    FastPAUCDROLoss,
    FastSOPAs,
    ResumablePAUCDROLoss,
)
from deepauc.training.fit import prepare_batch, train_step
from deepauc.training.runtime import Runtime
from deepauc.training.stages import finetune_job, run_finetune
from tests.test_dam import _warm, easy  # noqa: F401 (the fixture)

N = 40  # training samples the losses keep state for


def _batches(steps=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randperm(N, generator=generator)[:16]
        x = torch.randn(16, 6, generator=generator)
        y = (index % 3 == 0).float().view(-1, 1)  # a sample's label is fixed by its index
        y[0] = 1.0
        yield x, y, index


def _run(loss_class, optimizer_class, model, mode, steps=10, epoch_decay=0.0, reference=None):
    loss = loss_class(data_len=N, gamma=0.9, margin=1.0, Lambda=0.5, device="cpu")
    optimizer = optimizer_class(
        model.parameters(), lr=0.01, mode=mode, epoch_decay=epoch_decay, verbose=False, device="cpu"
    )
    if optimizer.model_ref is not None:  # kept only with epoch_decay
        for mine, theirs in zip(optimizer.model_ref, reference, strict=True):
            mine.copy_(theirs)
    for step, (x, y, index) in enumerate(_batches(steps)):
        optimizer.zero_grad(set_to_none=True)
        loss(torch.sigmoid(model(x)), y, index).backward()
        optimizer.step()
        if epoch_decay > 0 and step == steps // 2:  # the schedule's step: reference moves
            optimizer.update_regularizer(decay_factor=10)
    return [p.detach().clone() for p in model.parameters()], loss.u_pos.clone()


@pytest.mark.parametrize("mode", ["adam", "sgd"])
@pytest.mark.parametrize("epoch_decay", [0.0, 1e-3])
def test_ours_makes_libauc_updates_step_for_step(mode, epoch_decay):
    torch.manual_seed(0)
    start = torch.nn.Linear(6, 1)
    reference = [torch.randn(p.shape) * 0.01 for p in start.parameters()]
    theirs = _run(pAUC_DRO_Loss, SOPAs, copy.deepcopy(start), mode, 10, epoch_decay, reference)
    ours = _run(
        ResumablePAUCDROLoss, AnchoredSOPAs, copy.deepcopy(start), mode, 10, epoch_decay, reference
    )
    for a, b in zip(theirs[0], ours[0], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(theirs[1], ours[1])
    assert not torch.equal(theirs[0][0], start.weight)  # it did train
    assert (ours[1] > 0).sum() > 5  # positives' averages moved


@pytest.mark.parametrize("mode", ["adam", "sgd"])
def test_the_sync_free_loss_makes_libauc_updates_within_float_noise(mode):
    torch.manual_seed(0)
    start = torch.nn.Linear(6, 1)
    theirs = _run(pAUC_DRO_Loss, SOPAs, copy.deepcopy(start), mode, 12)
    ours = _run(FastPAUCDROLoss, SOPAs, copy.deepcopy(start), mode, 12)
    for a, b in zip(theirs[0], ours[0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(theirs[1], ours[1], rtol=1e-6, atol=1e-7)
    # one step's loss and gradient, on a batch with a positive drawn twice
    model = copy.deepcopy(start)
    x, y, index = next(_batches(1, seed=3))
    x, y, index = torch.cat([x, x[:1]]), torch.cat([y, y[:1]]), torch.cat([index, index[:1]])
    grads = []
    for loss_class in (pAUC_DRO_Loss, FastPAUCDROLoss):
        model.zero_grad()
        loss = loss_class(data_len=N, Lambda=0.5, device="cpu")
        value = loss(torch.sigmoid(model(x)), y, index)
        value.backward()
        grads.append((value.detach(), model.weight.grad.clone(), loss.u_pos.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["adam", "sgd"])
@pytest.mark.parametrize("epoch_decay", [0.0, 1e-3])
def test_the_multi_tensor_sopas_makes_libauc_updates(mode, epoch_decay):
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    reference = [torch.randn(p.shape) * 0.01 for p in start.parameters()]
    theirs = _run(pAUC_DRO_Loss, SOPAs, copy.deepcopy(start), mode, 12, epoch_decay, reference)
    ours = _run(pAUC_DRO_Loss, FastSOPAs, copy.deepcopy(start), mode, 12, epoch_decay, reference)
    for a, b in zip(theirs[0], ours[0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert not torch.equal(theirs[0][0], start[0].weight)


def test_the_sync_free_loss_is_zero_without_positives_where_libauc_asserts():
    scores = torch.rand(8, 1)
    none = torch.zeros(8, 1)
    assert float(FastPAUCDROLoss(data_len=8, device="cpu")(scores, none, torch.arange(8))) == 0
    with pytest.raises(AssertionError, match="no positive"):
        pAUC_DRO_Loss(data_len=8, device="cpu")(scores, none, torch.arange(8))


def test_the_per_positive_state_is_in_the_state_dict_so_a_resume_continues_it():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    theirs = pAUC_DRO_Loss(data_len=N, device="cpu")
    ours = ResumablePAUCDROLoss(data_len=N, device="cpu")
    for loss in (theirs, ours):
        for x, y, index in _batches(4):
            loss(torch.sigmoid(model(x)), y, index)
    assert "u_pos" not in theirs.state_dict()  # libauc's: lost with a resume
    restored = ResumablePAUCDROLoss(data_len=N, device="cpu")
    restored.load_state_dict(ours.state_dict())
    assert torch.equal(restored.u_pos, ours.u_pos) and ours.u_pos.abs().sum() > 0
    x, y, index = next(_batches(1, seed=5))
    scores = torch.sigmoid(model(x))
    assert torch.equal(restored(scores, y, index), ours(scores, y, index))


def test_reference_weights_start_at_the_starting_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    theirs = SOPAs(model.parameters(), epoch_decay=1e-3, verbose=False, device="cpu")
    ours = AnchoredSOPAs(model.parameters(), epoch_decay=1e-3, verbose=False, device="cpu")
    assert all(
        torch.equal(r, p.detach()) for r, p in zip(ours.model_ref, model.parameters(), strict=True)
    )
    assert not torch.equal(theirs.model_ref[0], model.weight.detach())  # libauc: noise


def test_a_pauc_job_feeds_sample_indices_and_steps_as_libauc_does(easy, tmp_path):  # noqa: F811
    train, val, _ = easy
    warm = _warm(easy, "resnet10t", epochs=3, lr=2e-3)
    settings = FinetuneSettings(
        method="pauc",
        method_settings=PaucSettings(lr=1e-3),
        epochs=1,
        batch_size=16,
    )
    runtime = Runtime.create("cpu", seed=0, threads=2)
    job = finetune_job(warm, "Edema", train, val, settings, AugmentSettings(), runtime)
    assert type(job.extra_state) is FastPAUCDROLoss  # the default implementation
    assert type(job.optimizer) is FastSOPAs
    assert job.extra_state.u_pos.shape[0] == len(job.train_loader.dataset)
    model = copy.deepcopy(job.model)
    loss = pAUC_DRO_Loss(data_len=len(job.train_loader.dataset), device="cpu")
    optimizer = SOPAs(model.parameters(), lr=1e-3, verbose=False, device="cpu")
    model.train()
    job.model.train()
    batches = iter(job.train_loader)
    for _ in range(5):
        images, targets, index = next(batches)
        labels = job.train_loader.dataset.targets[index.numpy(), 0]
        assert torch.equal(targets[:, 0], torch.from_numpy(labels))  # the index is the sample's
        inputs = prepare_batch(job, images, runtime)
        train_step(job, inputs, targets, runtime, index)
        optimizer.zero_grad(set_to_none=True)
        loss(torch.sigmoid(model(inputs)), targets, index).backward()
        optimizer.step()
    for ours, theirs in zip(job.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(job.extra_state.u_pos, loss.u_pos, rtol=0, atol=1e-6)
    history = run_finetune(
        warm,
        "Edema",
        train,
        val,
        settings,
        AugmentSettings(),
        runtime,
        tmp_path / "model.pt",
        tmp_path / "history.csv",
    )
    assert history["val_auc"].between(0, 1).all() and len(history) >= 2
