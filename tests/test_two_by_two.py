"""The 2 x 2's other cells: AUCM with Adam (``aucm_adam``) and BCE with PESG (``bce_pesg``).

Each is one half of DAM beside the other half of CE. Where they agree with a reference (libauc's
PESG, torch's Adam) they make its updates step for step; where they deliberately differ, the
test says how.
"""

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from libauc.losses import AUCMLoss

from deepauc.methods import METHODS, BuildContext
from deepauc.methods.aucm_adam import ALPHA_RANGE, AucmAdamSettings
from deepauc.methods.bce_pesg import BcePesgSettings
from deepauc.methods.libauc_variants import AnchoredPESG

STEPS = 10


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def _batches(seed=1, size=16):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        x = torch.randn(size, 6, generator=generator)
        y = (x[:, :1] + 0.5 * torch.randn(size, 1, generator=generator) > 0.3).float()
        yield x, y


def _context(model, start=None):
    def start_scores():
        x, y = next(_batches(seed=9, size=64))
        with torch.no_grad():
            return torch.sigmoid(model(x)).squeeze(1), y.squeeze(1)

    return BuildContext(
        device=torch.device("cpu"), log=logging.getLogger("test"), start_scores=start_scores
    )


def _train(recipe, model):
    for x, y in _batches():
        recipe.optimizer.zero_grad()
        recipe.loss_fn(model(x), y).backward()
        recipe.optimizer.step()


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("implementation", ["fast", "libauc"])
@pytest.mark.parametrize("mode", ["sgd", "adam"])
def test_bce_pesg_is_libauc_pesg_on_bce_step_for_step(mode, implementation):
    """Agreement: the network takes PESG's updates (anchored at the start, as DAM's) on the BCE
    loss, with no dual variables; the reference is libauc's PESG driven by hand."""
    settings = BcePesgSettings(
        lr=0.05 if mode == "sgd" else 1e-3, mode=mode, implementation=implementation
    )
    ours = _model()
    recipe = METHODS["bce_pesg"].build(ours, settings, _context(ours))
    _train(recipe, ours)

    theirs = _model()
    reference = AnchoredPESG(
        theirs.parameters(),
        loss_fn=None,
        lr=settings.lr,
        mode=mode,
        epoch_decay=settings.epoch_decay,
        weight_decay=settings.weight_decay,
        verbose=False,
        device=torch.device("cpu"),
    )
    for x, y in _batches():
        reference.zero_grad()
        F.binary_cross_entropy_with_logits(theirs(x), y).backward()
        reference.step()
    for mine, other in zip(_weights(ours), _weights(theirs), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-5, atol=1e-6)
    assert recipe.duals is None  # no dual variables to report


def test_bce_pesg_differs_from_ce_by_its_update_and_anchor_only():
    """Deliberate difference: the same loss and rate, but PESG's clipped, anchored update
    instead of Adam's moves the network elsewhere; with the anchor at its strongest the network
    stays nearer its start than with the anchor off."""
    start = _weights(_model())
    moved = {}
    for decay in (0.0, 5.0):
        model = _model()
        recipe = METHODS["bce_pesg"].build(
            model, BcePesgSettings(lr=0.05, epoch_decay=decay), _context(model)
        )
        _train(recipe, model)
        moved[decay] = sum(
            float((w - w0).norm()) for w, w0 in zip(_weights(model), start, strict=True)
        )
    assert moved[5.0] < moved[0.0]

    ce = _model()
    ce_recipe = METHODS["ce"].build(ce, METHODS["ce"].settings(lr=0.05), _context(ce))
    _train(ce_recipe, ce)
    pesg = _model()
    _train(METHODS["bce_pesg"].build(pesg, BcePesgSettings(lr=0.05), _context(pesg)), pesg)
    assert not torch.allclose(_weights(ce)[0], _weights(pesg)[0])


def test_aucm_adam_is_torch_adam_on_libauc_aucm_loss():
    """Agreement: the network, a and b take torch Adam's updates on libauc's AUCMLoss, started
    where DAM starts its duals (the class means); alpha takes Adam's ascent step."""
    settings = AucmAdamSettings(lr=1e-3, implementation="libauc")
    ours = _model()
    recipe = METHODS["aucm_adam"].build(ours, settings, _context(ours))
    start = {name: value for name, value in recipe.duals().items()}
    assert start["a"] > 0 and start["b"] > 0  # the class means, not libauc's zeros
    _train(recipe, ours)

    theirs = _model()
    loss = AUCMLoss(margin=settings.margin, device=torch.device("cpu"))
    with torch.no_grad():
        for name in ("a", "b", "alpha"):
            getattr(loss, name).fill_(start[name])
    descend = torch.optim.Adam(
        [
            {"params": list(theirs.parameters()), "weight_decay": settings.weight_decay},
            {"params": [loss.a, loss.b], "weight_decay": 0.0},
        ],
        lr=settings.lr,
    )
    ascend = torch.optim.Adam([loss.alpha], lr=settings.lr, maximize=True)
    for x, y in _batches():
        descend.zero_grad()
        ascend.zero_grad()
        loss(torch.sigmoid(theirs(x)), y).squeeze().backward()
        descend.step()
        ascend.step()
        with torch.no_grad():
            loss.alpha.clamp_(*ALPHA_RANGE)
    for mine, other in zip(_weights(ours), _weights(theirs), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-5, atol=1e-6)
    for name, value in recipe.duals().items():
        assert value == pytest.approx(float(getattr(loss, name).detach()), abs=1e-6)


def test_aucm_adam_differs_from_dam_by_the_optimizer_only():
    """Deliberate difference: the same loss and start as DAM, but no anchor and no clipping:
    alpha is ascended (from libauc's zero start, where the margin is far from met, it rises)
    and stays in PESG's range, and the network ends elsewhere than under DAM's PESG in adam mode
    at the same rate."""
    model = _model()
    recipe = METHODS["aucm_adam"].build(
        model, AucmAdamSettings(lr=1e-2, init_duals="zero"), _context(model)
    )
    assert recipe.duals()["alpha"] == 0
    _train(recipe, model)
    assert ALPHA_RANGE[0] < recipe.duals()["alpha"] <= ALPHA_RANGE[1]

    model = _model()
    recipe = METHODS["aucm_adam"].build(model, AucmAdamSettings(lr=1e-2), _context(model))
    _train(recipe, model)

    dam = _model()
    dam_settings = METHODS["dam"].settings(lr=1e-2, mode="adam")
    _train(METHODS["dam"].build(dam, dam_settings, _context(dam)), dam)
    assert not torch.allclose(_weights(model)[0], _weights(dam)[0])


def test_the_2x2_methods_resume_where_they_stopped():
    """A fine-tune interrupted and resumed makes the updates of one that was not: the
    optimizer's state and the loss's dual variables are all in what a resume file saves."""
    for name, settings in (
        ("aucm_adam", AucmAdamSettings(lr=1e-2)),
        ("bce_pesg", BcePesgSettings(lr=0.05)),
    ):
        whole = _model()
        recipe = METHODS[name].build(whole, settings, _context(whole))
        _train(recipe, whole)

        half = _model()
        first = METHODS[name].build(half, settings, _context(half))
        batches = list(_batches())
        for x, y in batches[: STEPS // 2]:
            first.optimizer.zero_grad()
            first.loss_fn(half(x), y).backward()
            first.optimizer.step()
        saved = copy.deepcopy(
            {
                "model": half.state_dict(),
                "optimizer": first.optimizer.state_dict(),
                "extra": first.extra_state.state_dict() if first.extra_state is not None else None,
            }
        )
        again = _model(seed=5)
        again.load_state_dict(saved["model"])
        second = METHODS[name].build(again, settings, _context(again))
        second.optimizer.load_state_dict(saved["optimizer"])
        if saved["extra"] is not None:
            second.extra_state.load_state_dict(saved["extra"])
        for x, y in batches[STEPS // 2 :]:
            second.optimizer.zero_grad()
            second.loss_fn(again(x), y).backward()
            second.optimizer.step()
        for mine, other in zip(_weights(again), _weights(whole), strict=True):
            torch.testing.assert_close(mine, other, rtol=1e-5, atol=1e-6)
