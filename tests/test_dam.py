"""DAM as we run it against libauc's own: the same updates step for step, different starting
points on purpose, and a LayerNorm network that libauc's starting points collapse and ours do
not."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from libauc.losses import AUCMLoss
from libauc.optimizers import PDSCA, PESG

from deepauc.config.settings import AugmentSettings, FinetuneSettings, WarmupSettings
from deepauc.evaluation.diagnostics import diagnostics_table
from deepauc.methods import DamSettings
from deepauc.methods.libauc_variants import AnchoredPDSCA, AnchoredPESG, init_duals_from_scores
from deepauc.models.checkpoints import load_model
from deepauc.training.fit import prepare_batch, train_step
from deepauc.training.runtime import Runtime
from deepauc.training.stages import finetune_job, run_finetune, run_warmup
from tests.test_train import DISEASES, SIZE, _easy_split

LIBAUC_STARTS = {"init_duals": "zero", "anchor": "noise", "implementation": "libauc"}


def _batches(steps=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=generator)
        y = (torch.rand(16, 1, generator=generator) < 0.4).float()
        y[0], y[1] = 1.0, 0.0  # both classes in every batch
        yield x, y


def _run(optimizer_class, model, reference, mode, steps=12, **options):
    loss = AUCMLoss(device="cpu")
    optimizer = optimizer_class(
        model.parameters(), loss_fn=loss, mode=mode, lr=0.05, verbose=False, device="cpu"
    )
    for mine, theirs in zip(optimizer.model_ref, reference, strict=True):
        mine.copy_(theirs)
    for step, (x, y) in enumerate(_batches(steps)):
        optimizer.zero_grad(set_to_none=True)
        loss(torch.sigmoid(model(x)), y).backward()
        optimizer.step()
        if step == steps // 2:
            optimizer.update_regularizer(decay_factor=10)
    return [p.detach().clone() for p in [*model.parameters(), loss.a, loss.b, loss.alpha]]


@pytest.mark.parametrize("mode", ["sgd", "adam"])
def test_anchored_pesg_makes_libauc_updates_step_for_step(mode):
    torch.manual_seed(0)
    start = torch.nn.Linear(6, 1)
    # libauc's layout of model_ref: every parameter, then a and b; noise as libauc draws it.
    reference = [torch.randn(p.shape) * 0.01 for p in start.parameters()]
    reference += [torch.randn(1) * 0.01, torch.randn(1) * 0.01]
    theirs = _run(PESG, copy.deepcopy(start), reference, mode)
    ours = _run(AnchoredPESG, copy.deepcopy(start), reference, mode)
    assert all(torch.equal(a, b) for a, b in zip(theirs, ours, strict=True))
    assert not torch.equal(theirs[0], start.weight)  # it did train


@pytest.mark.parametrize("classes", [(PESG, AnchoredPESG), (PDSCA, AnchoredPDSCA)])
def test_only_the_reference_weights_start_differently(classes):
    libauc_class, anchored_class = classes
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    loss = AUCMLoss(device="cpu")
    loss.a.data.fill_(0.7)
    theirs = libauc_class(model.parameters(), loss_fn=loss, verbose=False, device="cpu")
    ours = anchored_class(model.parameters(), loss_fn=loss, verbose=False, device="cpu")
    start = [model.weight, model.bias, loss.a, loss.b]
    assert all(torch.equal(r, p.detach()) for r, p in zip(ours.model_ref, start, strict=True))
    assert not torch.equal(theirs.model_ref[0], model.weight.detach())
    assert float(theirs.model_ref[2]) != pytest.approx(0.7)  # libauc: noise near 0
    assert theirs.param_groups[0]["lr"] == ours.param_groups[0]["lr"]


def test_dual_variables_start_at_the_class_means():
    loss = AUCMLoss(margin=1.0, device="cpu")
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.1, 0.3])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    a, b, alpha = init_duals_from_scores(loss, scores, labels)
    assert (a, b) == pytest.approx((0.8, 0.2))
    assert alpha == pytest.approx(1.0 + 0.2 - 0.8)  # where PESG's ascent step for alpha rests
    assert float(loss.a.detach()) == pytest.approx(0.8)
    assert float(loss.alpha.detach()) == pytest.approx(0.4)


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy_dam")
    return _easy_split(root / "train", 192, 0), _easy_split(root / "val", 96, 1), root


def _warm(easy, arch, epochs, lr):
    train, val, root = easy
    path = root / f"warmup-{arch}.pt"
    if not path.exists():
        run_warmup(
            arch,
            train,
            val,
            DISEASES,
            SIZE,
            # timm's random head: the warm start these measurements were made from
            WarmupSettings(epochs=epochs, batch_size=16, lr=lr, head_init="random"),
            AugmentSettings(rotation=0, translate=0, scale=(1, 1)),
            Runtime.create("cpu", seed=0, threads=2),
            path,
            root / f"warmup-{arch}.history.csv",
        )
    return path


def test_libauc_behaviour_stays_selectable_and_is_libauc_step_for_step(easy):
    train, val, root = easy
    warm = _warm(easy, "resnet10t", epochs=3, lr=2e-3)
    settings = FinetuneSettings(
        method="dam",
        method_settings=DamSettings(lr=0.05, **LIBAUC_STARTS),
        head_init="random",
        epochs=1,
        batch_size=16,
    )
    runtime = Runtime.create("cpu", seed=0, threads=2)
    job = finetune_job(warm, "Edema", train, val, settings, AugmentSettings(), runtime)
    assert type(job.optimizer) is PESG and type(job.extra_state) is AUCMLoss
    assert [float(job.extra_state.a.detach()), float(job.extra_state.b.detach())] == [0.0, 0.0]
    warm_model, meta = load_model(warm)
    row = meta["outputs"].index("Edema")
    head = job.model.get_classifier()
    assert not torch.allclose(head.weight, warm_model.get_classifier().weight[row : row + 1])

    # libauc's own loop on a copy of the same start, with the same reference weights.
    model = copy.deepcopy(job.model)
    loss = AUCMLoss(margin=1.0, device="cpu")
    optimizer = PESG(model.parameters(), loss_fn=loss, lr=0.05, verbose=False, device="cpu")
    for mine, theirs in zip(optimizer.model_ref, job.optimizer.model_ref, strict=True):
        mine.copy_(theirs)
    model.train()
    job.model.train()
    batches = iter(job.train_loader)
    for _ in range(6):
        images, targets = next(batches)
        inputs = prepare_batch(job, images, runtime)
        train_step(job, inputs, targets, runtime)
        optimizer.zero_grad(set_to_none=True)
        loss(torch.sigmoid(model(inputs)), targets).squeeze().backward()
        optimizer.step()
    for ours, theirs in zip(job.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(job.extra_state.alpha, loss.alpha, rtol=0, atol=1e-6)


def _dam_history(easy, warm, out, **starts) -> pd.DataFrame:
    train, val, _ = easy
    settings = FinetuneSettings(
        method="dam",
        method_settings=DamSettings(**{k: v for k, v in starts.items() if k != "head_init"}),
        head_init=starts.get("head_init", "warmup"),
        epochs=2,
        batch_size=16,
        eval_every_steps=4,
    )
    return run_finetune(
        warm,
        "Edema",
        train,
        val,
        settings,
        AugmentSettings(),
        Runtime.create("cpu", seed=0, threads=2),
        out / "model.pt",
        out / "history.csv",
    )


def test_a_layernorm_network_holds_its_warm_start_under_dam_and_collapses_under_libauc_starts(
    easy, tmp_path
):
    warm = _warm(easy, "convnext_atto", epochs=4, lr=2e-3)
    ours = _dam_history(easy, warm, tmp_path / "ours")
    assert ours["step"].iloc[0] == 0
    assert ours["val_auc"].iloc[0] > 0.65  # the warm-up learned: the test means something
    assert (ours["distinct_share"] >= 0.9).all()
    # The final weights keep the warm start (learning beyond it is welcome, losing it is not).
    assert ours["val_auc"].iloc[-1] >= ours["val_auc"].iloc[0] - 0.03
    assert not ours["collapsed"].any()

    theirs = _dam_history(easy, warm, tmp_path / "theirs", head_init="random", **LIBAUC_STARTS)
    # libauc's starts: a random head at step 0, and the loss first pulls every probability
    # toward a = b = 0, which the alarm sees; the run ends below where ours started.
    assert theirs["collapsed"].any(), theirs.to_string()
    assert theirs["val_auc"].iloc[-1] < ours["val_auc"].iloc[0] - 0.03, theirs.to_string()
    assert np.isnan(theirs["train_loss"].iloc[0])  # step 0 is scored before any training


def test_diagnostics_keep_the_best_rate_on_val_and_count_collapsed_rates():
    def history(aucs, collapsed):
        return pd.DataFrame(
            {"step": [0, 4, 8], "val_auc": aucs, "collapsed": collapsed, "a": 0.3, "b": 0.1}
        )

    runs = {
        ("resnet10t", 0, "dam", "Edema", 0.1): history([0.7, 0.8, 0.75], [False, False, True]),
        ("resnet10t", 0, "dam", "Edema", 0.01): history([0.7, 0.72, 0.71], [False] * 3),
    }
    audit = pd.DataFrame(
        {"split": ["val"], "disease": ["Edema"], "positive": [25], "negative": [80]}
    )
    row = diagnostics_table(runs, audit, {"resnet10t": {0: 12}}).iloc[0]
    assert (row["chosen_lr"], row["chosen_step"], row["best_val_auc"]) == (0.1, 4, 0.8)
    assert (row["collapsed"], row["collapsed_rates"], row["rates_tried"]) == ("yes", 1, 2)
    assert (row["a"], row["b"]) == (0.3, 0.1) and np.isnan(row["alpha"])
    assert (row["val_pos"], row["warmup_best_step"]) == (25, 12)
    # the chosen run collapsed at its last evaluation: a failure, said in the caution too
    assert row["failure"] == row["caution"] == "COLLAPSE at its chosen rate"
    # a val split with few positives, a warm-up that never learned: both said
    audit["positive"] = 7
    row = diagnostics_table(runs, audit, {"resnet10t": {0: 0}}).iloc[0]
    assert row["caution"] == (
        "only 7 val positives; the warm-up never learned (best val AUC at step 0); "
        "COLLAPSE at its chosen rate"
    )
