"""LibAUC's Deep AUC Maximization pieces, and where we start them differently.

LibAUC's optimizers (PESG, PDSCA) start their reference weights ``model_ref`` as N(0, 0.01)
noise, so in the first epoch ``epoch_decay`` pulls every weight toward zero, and its losses start
the dual variables ``a``, ``b`` (and ``alpha``) at 0, so a warm-started model's scores are first
pulled toward one value. Both are fine from scratch and harmful for a fine-tune. The variants
here change exactly those starting points and nothing else: every update is libauc's own.

- :class:`AnchoredPESG`, :class:`AnchoredPDSCA`: ``model_ref`` starts at the starting weights.
- :class:`ResumableCompositionalAUCLoss`: its BCE/AUC alternation survives a resume.
- :class:`ResumablePAUCDROLoss`: its per-positive averages are in its state dict;
  :class:`FastPAUCDROLoss` computes the same loss without host syncs.
- :class:`AnchoredSOPAs`: SOPAs' ``model_ref`` starts at the starting weights.
- :func:`init_duals_from_scores`: ``a``, ``b`` at the class means of the starting model's scores,
  ``alpha`` at its closed form ``max(0, margin + b - a)`` (where PESG's ascent step rests).

Orthogonal to where they start is how the steps run: ``implementation: fast`` (the default) uses
the multi-tensor steps of :mod:`deepauc.methods.fast_steps`, ``libauc`` libauc's own per-tensor
loop. The
:func:`optimizer_class` table gives every combination.
"""

import functools
import logging
import math

import torch
from libauc.losses import AUCMLoss, CompositionalAUCLoss, pAUC_DRO_Loss
from libauc.optimizers import PDSCA, PESG, SOPAs

from deepauc.methods.fast_steps import FastAUCMLoss, FastPDSCA, FastPESG

log = logging.getLogger(__name__)


def _start_copies(self, params) -> list[torch.Tensor]:
    """``model_ref`` as libauc lays it out (every parameter, then ``a`` and ``b``), holding
    copies of their values now instead of noise."""
    variables = [v for v in [*list(params), self.a, self.b] if v is not None]
    return [v.detach().clone().float().to(self.device) for v in variables]


class AnchoredPESG(PESG):
    """libauc's PESG with ``model_ref`` anchored at the starting weights (``anchor: start``)."""

    __init_model_ref__ = _start_copies


class AnchoredPDSCA(PDSCA):
    """libauc's PDSCA with ``model_ref`` anchored at the starting weights (``anchor: start``)."""

    __init_model_ref__ = _start_copies


class AnchoredFastPESG(FastPESG):
    """The multi-tensor PESG with ``model_ref`` anchored at the starting weights."""

    __init_model_ref__ = _start_copies


class AnchoredFastPDSCA(FastPDSCA):
    """The multi-tensor PDSCA with ``model_ref`` anchored at the starting weights."""

    __init_model_ref__ = _start_copies


#: (optimizer, anchor, implementation) -> class
_OPTIMIZERS = {
    ("pesg", "noise", "libauc"): PESG,
    ("pesg", "start", "libauc"): AnchoredPESG,
    ("pesg", "noise", "fast"): FastPESG,
    ("pesg", "start", "fast"): AnchoredFastPESG,
    ("pdsca", "noise", "libauc"): PDSCA,
    ("pdsca", "start", "libauc"): AnchoredPDSCA,
    ("pdsca", "noise", "fast"): FastPDSCA,
    ("pdsca", "start", "fast"): AnchoredFastPDSCA,
}


def optimizer_class(optimizer: str, anchor: str, implementation: str, compile: bool = False):
    """The class for libauc's ``optimizer`` ("pesg" or "pdsca") with reference weights from
    ``anchor`` ("start" or "noise") and steps from ``implementation`` ("fast" or "libauc").
    ``compile`` compiles a fast step's arithmetic (libauc's step is never compiled: it loses
    its counters)."""
    chosen = _OPTIMIZERS[(optimizer, anchor, implementation)]
    if compile and implementation == "fast":
        return functools.partial(chosen, compile=True)
    return chosen


def check_pesg_mode(mode: str) -> None:
    """A job's PESG mode must be one PESG knows: ``auto`` is resolved before jobs start."""
    if mode not in ("sgd", "adam"):
        raise ValueError(
            f"PESG mode {mode!r}: the workflow resolves mode auto per architecture "
            "(deepauc.config.rates.resolve_pesg_modes) before a job starts; give sgd or adam here"
        )


def aucm_loss_class(implementation: str) -> type:
    """libauc's AUCMLoss, or the same loss without its per-step host sync."""
    return FastAUCMLoss if implementation == "fast" else AUCMLoss


class ResumableCompositionalAUCLoss(CompositionalAUCLoss):
    """libauc's CompositionalAUCLoss whose state dict also holds its step counter, which decides
    whether the next step is a BCE or an AUC step, and ``alpha``'s gradient: PDSCA takes a step
    for an AUC step when ``alpha`` has a gradient, and nothing clears it after the first AUC
    step (``alpha`` is not among the optimizer's parameters), so from then on BCE steps too
    take PDSCA's AUC branch. A run resumed part-way through an epoch alternates, and branches,
    as an uninterrupted one does."""

    def get_extra_state(self):
        grad = self.alpha.grad
        return {"step": self.step, "alpha_grad": None if grad is None else grad.detach().clone()}

    def set_extra_state(self, state):
        self.step = state["step"]
        grad = state.get("alpha_grad")
        self.alpha.grad = None if grad is None else grad.to(self.alpha.device).clone()

    @torch.no_grad()
    def load_state_dict(self, state_dict, strict=True):
        for name in ("a", "b", "alpha"):
            getattr(self, name).copy_(state_dict[name])
        if "_extra_state" in state_dict:
            self.set_extra_state(state_dict["_extra_state"])


@torch.no_grad()
def init_duals_from_scores(
    loss: torch.nn.Module, scores: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float, float]:
    """Set ``loss.a`` and ``loss.b`` (libauc's AUCM-type losses) to the mean score of the
    positives and of the negatives, and ``loss.alpha`` to ``max(0, margin + b - a)``: the
    fixed point of PESG's ascent step for alpha. ``scores`` are what the loss sees (sigmoid
    outputs). Returns (a, b, alpha)."""
    positive = labels == 1
    if positive.all() or not positive.any():
        log.warning("dual variables left at 0: the sample has only one class")
        return 0.0, 0.0, 0.0
    a = scores[positive].float().mean()
    b = scores[~positive].float().mean()
    alpha = torch.clamp(loss.margin + b - a, min=0)
    loss.a.fill_(a)
    loss.b.fill_(b)
    loss.alpha.fill_(alpha)
    return float(a), float(b), float(alpha)


class ResumablePAUCDROLoss(pAUC_DRO_Loss):
    """libauc's pAUC_DRO_Loss with its per-positive moving averages ``u_pos`` as a buffer:
    libauc keeps them as a plain tensor attribute, outside the state dict, so a resumed job
    would restart them at 0 (and a checkpoint of the loss would not hold them). The updates are
    libauc's own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        u_pos = self.u_pos
        del self.u_pos
        self.register_buffer("u_pos", u_pos)


class AnchoredSOPAs(SOPAs):
    """libauc's SOPAs with ``model_ref`` (used only with ``epoch_decay`` > 0) anchored at the
    starting weights instead of N(0, 0.01) noise, as :class:`AnchoredPESG`. SOPAs has no dual
    variables among its references."""

    def __init_model_ref__(self, params):
        return [p.detach().clone().float().to(self.device) for p in params if p is not None]


class FastPAUCDROLoss(ResumablePAUCDROLoss):
    """:class:`ResumablePAUCDROLoss` computed without a host sync (``implementation: fast``).

    libauc's forward selects the batch's positive and negative rows by boolean masks and asserts
    that a positive is present: on a GPU each of these waits for the device, every step. Here
    the same quantities come from the whole batch's (rows x rows) pair matrix weighted by a
    positive-row x negative-column mask, the per-positive averages are written back for every
    row (a negative's unchanged: a sample's label is fixed, so a negative's index is never a
    positive's), and the counts stay tensors. The same loss, gradient and ``u_pos`` as libauc's
    up to float summation order (``tests/test_pauc.py``); a batch without positives gives a
    loss of 0 instead of libauc's assertion (the DualSampler puts positives in every batch).
    """

    def forward(self, y_pred, y_true, index, **kwargs):
        y_pred = y_pred.reshape(-1, 1)
        y_true = y_true.reshape(-1, 1)
        index = index.reshape(-1)
        if self.distributed:  # every rank's batch, as libauc gathers it
            y_pred = torch.cat(torch.distributed.nn.all_gather(y_pred), dim=0)
            y_true = torch.cat(torch.distributed.nn.all_gather(y_true), dim=0)
            index = torch.cat(torch.distributed.nn.all_gather(index), dim=0)
        positive = (y_true == 1).reshape(-1).to(y_pred.dtype)
        negative = (y_true == 0).reshape(-1).to(y_pred.dtype)
        pairs = positive[:, None] * negative[None, :]  # row i positive, column j negative
        n_neg = negative.sum().clamp(min=1)
        # surrogate of f(positive i) - f(negative j); other pairs zeroed before the exp
        surrogate = self.surrogate_loss(self.margin, y_pred - y_pred.reshape(1, -1)) * pairs
        exp_loss = torch.exp(surrogate / self.Lambda) * pairs
        mean_exp = (exp_loss.sum(dim=1, keepdim=True) / n_neg).detach()
        old = self.u_pos[index]
        is_positive = positive[:, None].bool()
        self.u_pos[index] = torch.where(
            is_positive, (1 - self.gamma) * old + self.gamma * mean_exp, old
        )
        weight = (exp_loss / self.u_pos[index].clamp(min=1e-30)).detach()
        return (weight * surrogate).sum() / (positive.sum().clamp(min=1) * n_neg)


class FastSOPAs(AnchoredSOPAs):
    """:class:`AnchoredSOPAs` with its update on tensor lists (``torch._foreach_*``): libauc's
    SOPAs loops over the parameters one tensor at a time, a few launches each, which on a GPU
    costs more than the network's own step at the study's batch (``bench/step_speed.py``). The
    same arithmetic in the same order per element: gradient clipped at ``clip_value``, the L2
    and ``epoch_decay`` terms added, then Adam (bias-corrected) or momentum SGD, the reference
    accumulator updated; AMSGrad falls back to libauc's loop."""

    @torch.no_grad()
    def step(self, closure=None):
        if any(group["amsgrad"] for group in self.param_groups) and self.mode == "adam":
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self.lr = group["lr"]
            kept = [(i, p) for i, p in enumerate(group["params"]) if p.grad is not None]
            if not kept:
                continue
            params = [p for _, p in kept]
            clip, decay = group["clip_value"], group["epoch_decay"]
            grads = [p.grad.clamp(-clip, clip) for p in params]
            if decay > 0:
                refs = [group["model_ref"][i] for i, _ in kept]
                torch._foreach_add_(grads, torch._foreach_sub(params, refs), alpha=decay)
            if group["weight_decay"]:
                torch._foreach_add_(grads, params, alpha=group["weight_decay"])
            if self.mode == "sgd":
                self._sgd(group, params, grads)
            else:
                self._adam(group, params, grads)
            if decay > 0:
                torch._foreach_add_([group["model_acc"][i] for i, _ in kept], params)
        self.steps += 1
        self.T += 1
        return loss

    def _sgd(self, group, params, grads):
        momentum, dampening = group["momentum"], group["dampening"]
        if momentum != 0:
            buffers = []
            for p, d_p in zip(params, grads, strict=True):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(d_p, alpha=1 - dampening)
                buffers.append(state["momentum_buffer"])
            grads = (
                torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers
            )
        torch._foreach_add_(params, grads, alpha=-group["lr"])

    def _adam(self, group, params, grads):
        beta1, beta2 = group["betas"]
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        steps = {self.state[p]["step"] for p in params}
        if len(steps) != 1:  # parameters that skipped steps: libauc's loop handles each alone
            raise RuntimeError("FastSOPAs needs every parameter to have stepped equally often")
        step = steps.pop()
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, math.sqrt(bias_correction2))
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-group["lr"] / bias_correction1)
