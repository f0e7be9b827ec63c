"""The multi-tensor PESG/PDSCA and sync-free AUCM loss against libauc's own: the same updates
step for step (both modes, across update_regularizer, update_lr and a save/load), and where ours
deliberately differs (no host-syncing warning; PDSCA's a, b averaged over DDP ranks)."""

import copy
import io
import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from libauc.losses import AUCMLoss, CompositionalAUCLoss
from libauc.optimizers import PDSCA, PESG

from deepauc.methods.fast_steps import FastAUCMLoss, FastPDSCA, FastPESG
from deepauc.methods.libauc_variants import ResumableCompositionalAUCLoss, optimizer_class
from deepauc.models.checkpoints import safe_load
from deepauc.training.monitor import duals_rank_spread
from deepauc.training.runtime import Runtime

STEPS = 24
TOLERANCE = dict(rtol=0, atol=1e-6)


class Net(torch.nn.Module):
    """Several kinds of tensors, like a real network's: a conv, a LayerNorm, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.norm = torch.nn.LayerNorm([4, 6, 6])
        self.head = torch.nn.Linear(4 * 36, 1)

    def forward(self, x):
        return self.head(self.norm(torch.relu(self.conv(x))).flatten(1))


def batches(steps=STEPS, seed=0, size=16):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(size, 1, 8, 8, generator=generator)
        y = (torch.rand(size, 1, generator=generator) < 0.3).float()
        y[0], y[1] = 1.0, 0.0  # both classes, as DualSampler guarantees
        yield x, y


def make(optimizer_cls, loss_cls, model, **options):
    loss = loss_cls(device="cpu")
    options = {"lr": 0.05, **options}
    optimizer = optimizer_cls(
        model.parameters(), loss_fn=loss, verbose=False, device="cpu", **options
    )
    return loss, optimizer


def snapshot(model, loss, optimizer):
    """Every number a run carries: parameters, dual variables, optimizer state and counters."""
    values = {f"param {n}": p.detach().clone() for n, p in model.named_parameters()}
    values |= {name: getattr(loss, name).detach().clone() for name in ("a", "b", "alpha")}
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        for key, value in optimizer.state[p].items():
            values[f"state {i} {key}"] = torch.as_tensor(value).clone()
    pairs = zip(optimizer.model_ref or [], optimizer.model_acc or [], strict=True)
    for i, (ref, acc) in enumerate(pairs):
        values[f"model_ref {i}"], values[f"model_acc {i}"] = ref.clone(), acc.clone()
    values["T"], values["steps"] = torch.tensor(optimizer.T), torch.tensor(optimizer.steps)
    values["lr"] = torch.tensor(optimizer.param_groups[0]["lr"])
    return values


def train(model, loss, optimizer, steps, start=0, regularizer_at=8, lr_at=16, **decay):
    for step, (x, y) in enumerate(batches(STEPS)):
        if step < start or step >= start + steps:
            continue
        optimizer.zero_grad(set_to_none=True)
        loss(torch.sigmoid(model(x)), y).backward()
        optimizer.step()
        if step == regularizer_at:
            optimizer.update_regularizer(decay_factor=10, **decay)
        if step == lr_at:
            optimizer.update_lr(decay_factor=3, **decay)


def save_and_load(model, loss, optimizer, optimizer_cls, loss_cls, **options):
    """Write everything to bytes and rebuild it from scratch, as a resumed job does."""
    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "loss": loss.state_dict(), "opt": optimizer.state_dict()},
        buffer,
    )
    buffer.seek(0)
    saved = safe_load(buffer)  # as resume files are read: tensors and plain data only
    model = Net()
    model.load_state_dict(saved["model"])
    loss, optimizer = make(optimizer_cls, loss_cls, model, **options)
    loss.load_state_dict(saved["loss"])
    optimizer.load_state_dict(saved["opt"])
    return model, loss, optimizer


def assert_same(theirs: dict, ours: dict):
    assert theirs.keys() == ours.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key].float(), theirs[key].float(), **TOLERANCE, msg=key)


PESG_CASES = [
    pytest.param(dict(mode="sgd"), id="sgd"),
    pytest.param(dict(mode="adam"), id="adam"),
    pytest.param(dict(mode="adam", amsgrad=True), id="adam-amsgrad"),
    pytest.param(dict(mode="sgd", epoch_decay=0), id="sgd-no-epoch-decay"),
]


def _paired_runs(start, classes, options, decay_first=None, decay_later=None):
    """libauc's classes and ours from the same start and the same model_ref noise: 12 steps with
    a regularizer update at step 8, a save/load, 12 more with an lr decay at step 16."""
    runs, reference = {}, None
    for name, optimizer_cls, loss_cls in classes:
        model = copy.deepcopy(start)
        loss, optimizer = make(optimizer_cls, loss_cls, model, **options)
        if reference is None:
            reference = [r.clone() for r in optimizer.model_ref or []]
        for mine, theirs in zip(optimizer.model_ref or [], reference, strict=True):
            mine.copy_(theirs)
        regularizer_at = 8 if optimizer.model_ref is not None else -1
        train(
            model, loss, optimizer, steps=12, regularizer_at=regularizer_at, **(decay_first or {})
        )
        model, loss, optimizer = save_and_load(
            model, loss, optimizer, optimizer_cls, loss_cls, **options
        )
        train(model, loss, optimizer, steps=STEPS - 12, start=12, **(decay_later or {}))
        runs[name] = snapshot(model, loss, optimizer)
    return runs


@pytest.mark.parametrize("options", PESG_CASES)
def test_fast_pesg_makes_libauc_updates_for_24_steps_across_decays_and_a_resume(options):
    torch.manual_seed(0)
    start = Net()
    runs = _paired_runs(
        start, [("libauc", PESG, AUCMLoss), ("fast", FastPESG, FastAUCMLoss)], options
    )
    assert_same(runs["libauc"], runs["fast"])
    assert not torch.equal(runs["fast"]["param head.weight"], start.head.weight)  # it trained
    assert float(runs["fast"]["alpha"]) > 0  # the ascent step ran


def test_fast_pdsca_makes_libauc_updates_for_24_steps_across_decays_and_a_resume():
    torch.manual_seed(0)
    loss_cls = ResumableCompositionalAUCLoss
    runs = _paired_runs(
        Net(),
        [("libauc", PDSCA, loss_cls), ("fast", FastPDSCA, loss_cls)],
        {},
        decay_first={"decay_factor0": 10},
        decay_later={"decay_factor0": 3},
    )
    assert_same(runs["libauc"], runs["fast"])
    assert any("weight_buffer" in k for k in runs["fast"])  # BCE steps ran
    assert any("momentum_buffer" in k for k in runs["fast"])  # AUC steps ran


def test_a_libauc_checkpoint_resumes_in_the_fast_pesg():
    torch.manual_seed(0)
    model = Net()
    loss, optimizer = make(PESG, AUCMLoss, model)
    train(model, loss, optimizer, steps=10)
    runs = []
    for classes in [(PESG, AUCMLoss), (FastPESG, FastAUCMLoss)]:
        resumed = save_and_load(model, loss, optimizer, *classes)
        train(*resumed, steps=8, start=10)
        runs.append(snapshot(*resumed))
    assert_same(*runs)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fast_aucm_loss_equals_libauc_and_its_gradients(version):
    torch.manual_seed(0)
    scores = torch.rand(32, 1, requires_grad=True)
    labels = (torch.rand(32, 1) < 0.3).float()
    labels[0] = 1
    values, grads = [], []
    for loss_cls in (AUCMLoss, FastAUCMLoss):
        loss = loss_cls(version=version, device="cpu")
        loss.a.data.fill_(0.6)
        loss.b.data.fill_(0.3)
        loss.alpha.data.fill_(0.2)
        value = loss(scores, labels)
        grads.append(torch.autograd.grad(value, [scores, loss.a, loss.b, loss.alpha]))
        values.append(value.detach())
    torch.testing.assert_close(values[0], values[1], **TOLERANCE)
    for theirs, ours in zip(*grads, strict=True):
        torch.testing.assert_close(theirs, ours, **TOLERANCE)


def test_fast_aucm_loss_does_not_sync_to_warn_about_a_batch_without_positives():
    """Deliberate: libauc's warning costs a host sync every step; DualSampler makes it moot."""
    scores, labels = torch.rand(8, 1), torch.zeros(8, 1)
    with pytest.warns(UserWarning, match="no positive"):
        expected = AUCMLoss(device="cpu")(scores, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = FastAUCMLoss(device="cpu")(scores, labels)
    torch.testing.assert_close(got, expected)


def test_every_combination_is_selectable():
    model = Net()
    for optimizer in ("pesg", "pdsca"):
        for anchor in ("start", "noise"):
            for implementation in ("fast", "libauc"):
                cls = optimizer_class(optimizer, anchor, implementation)
                loss = (AUCMLoss if optimizer == "pesg" else CompositionalAUCLoss)(device="cpu")
                built = cls(model.parameters(), loss_fn=loss, verbose=False, device="cpu")
                base = PESG if optimizer == "pesg" else PDSCA
                assert isinstance(built, base)
                assert isinstance(built, (FastPESG, FastPDSCA)) == (implementation == "fast")
                anchored = torch.equal(built.model_ref[0], model.conv.weight.detach())
                assert anchored == (anchor == "start")


def test_compiled_update_makes_the_same_steps():
    torch.manual_seed(0)
    start = Net()
    runs = []
    for compile in (False, True):
        model = copy.deepcopy(start)
        loss = FastAUCMLoss(device="cpu")
        optimizer = optimizer_class("pesg", "start", "fast", compile)(
            model.parameters(), loss_fn=loss, verbose=False, device="cpu", lr=0.05
        )
        train(model, loss, optimizer, steps=10, regularizer_at=5, lr_at=7)
        runs.append(snapshot(model, loss, optimizer))
    assert_same(runs[0], runs[1])
    assert int(runs[1]["steps"]) == 10  # the counters stay outside the compiled region


# ---- DDP: the dual variables stay equal on every rank ------------------------------------------


def _rank(rank: int, world: int, init_file: str, optimizer_name: str, implementation: str, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(Net())
        loss = (AUCMLoss if optimizer_name == "pesg" else ResumableCompositionalAUCLoss)(
            device="cpu"
        )
        optimizer = optimizer_class(optimizer_name, "start", implementation)(
            model.parameters(), loss_fn=loss, verbose=False, device="cpu", lr=0.05
        )
        for x, y in batches(steps=10, seed=100 + rank):  # each rank its own data
            optimizer.zero_grad(set_to_none=True)
            loss(torch.sigmoid(model(x)), y).backward()
            optimizer.step()
        duals = torch.cat([loss.a.detach(), loss.b.detach(), loss.alpha.detach()])
        gathered = [torch.zeros(3) for _ in range(world)]
        dist.all_gather(gathered, duals)
        if rank == 0:
            torch.save(torch.stack(gathered), out)
    finally:
        dist.destroy_process_group()


def _duals_per_rank(tmp_path, optimizer_name, implementation):
    out = tmp_path / f"{optimizer_name}-{implementation}.pt"
    init_file = tmp_path / f"init-{optimizer_name}-{implementation}"
    mp.spawn(
        _rank,
        args=(2, str(init_file), optimizer_name, implementation, str(out)),
        nprocs=2,
        join=True,
    )
    return torch.load(out)


@pytest.mark.parametrize("optimizer_name", ["pesg", "pdsca"])
def test_dual_variables_stay_equal_on_every_ddp_rank(tmp_path, optimizer_name):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    duals = _duals_per_rank(tmp_path, optimizer_name, "fast")
    torch.testing.assert_close(duals[0], duals[1], rtol=0, atol=0)
    assert duals[0][0] != duals[0][1]  # a and b moved apart
    if optimizer_name == "pdsca":  # deliberate: libauc's PDSCA lets each rank's drift
        theirs = _duals_per_rank(tmp_path, optimizer_name, "libauc")
        assert not torch.equal(theirs[0], theirs[1])


def _spread_rank(rank: int, world: int, init_file: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world)
        equal = duals_rank_spread({"a": 0.5, "b": 0.25, "alpha": 0.1}, runtime)
        apart = duals_rank_spread({"a": 0.5, "b": 0.25 + 0.01 * rank, "alpha": 0.1}, runtime)
        if rank == 0:
            torch.save(torch.tensor([equal, apart]), out)
    finally:
        dist.destroy_process_group()


def test_the_fine_tune_reports_how_far_the_ranks_dual_variables_are_apart(tmp_path):
    """What each DDP evaluation records (``duals_rank_spread``) and warns about; the real
    two-GPU run (docs/benchmarks.md) checks its histories with it."""
    out = tmp_path / "spread.pt"
    mp.spawn(_spread_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    equal, apart = torch.load(out).tolist()
    assert equal == 0.0
    assert apart == pytest.approx(0.01)


@pytest.mark.parametrize(
    "classes",
    [
        pytest.param((PESG, FastPESG, AUCMLoss, dict(mode="sgd")), id="pesg-sgd"),
        pytest.param((PESG, FastPESG, AUCMLoss, dict(mode="adam")), id="pesg-adam"),
        pytest.param((PDSCA, FastPDSCA, ResumableCompositionalAUCLoss, {}), id="pdsca"),
    ],
)
def test_a_tensor_that_gets_its_first_gradient_late_starts_its_state_as_libauc_does(classes):
    """The conv is frozen (no gradient) for 5 steps: then its buffers start fresh while the
    others' go on, per tensor as in libauc's loop."""
    theirs_cls, ours_cls, loss_cls, options = classes
    torch.manual_seed(0)
    start = Net()
    runs = []
    for optimizer_cls in (theirs_cls, ours_cls):
        model = copy.deepcopy(start)
        loss, optimizer = make(optimizer_cls, loss_cls, model, **options)
        if runs:
            for mine, theirs in zip(optimizer.model_ref, runs[0][1], strict=True):
                mine.copy_(theirs)
        reference = [r.clone() for r in optimizer.model_ref]
        for step, (x, y) in enumerate(batches(12)):
            optimizer.zero_grad(set_to_none=True)
            features = torch.relu(model.conv(x))
            if step < 5:
                features = features.detach()
            scores = model.head(model.norm(features).flatten(1))
            loss(torch.sigmoid(scores), y).backward()
            optimizer.step()
        runs.append((snapshot(model, loss, optimizer), reference))
    assert_same(runs[0][0], runs[1][0])
