"""LibAUC's PESG and PDSCA steps with torch's multi-tensor ops, and an AUCM loss without host syncs.

LibAUC's ``step`` walks the parameters in Python and launches about a dozen small kernels per
tensor (25 ms a step for convnext_tiny's 182 tensors on an H100, 74 ms for densenet169's 508), and
``AUCMLoss.forward`` tests ``sum(pos_mask) == 0`` with Python's ``sum``: one tiny kernel per
sample and a host sync every step. The classes here subclass libauc's and change only how the
arithmetic is launched: the same update, in the same order of operations, on lists of tensors
(``torch._foreach_*``), so a step costs a few kernel launches whatever the number of tensors.
Everything else is libauc's: constructor, ``param_groups``, ``state`` (``momentum_buffer``,
``exp_avg``, ...), ``model_ref``/``model_acc``, ``update_lr``, ``update_regularizer``,
``state_dict``; a checkpoint from one loads into the other. ``tests/test_dam_fast.py`` checks
that both give the same parameters, dual variables and optimizer state step for step.

Deliberate differences: :class:`FastAUCMLoss` does not warn about a batch without positives
(that check is the host sync; DualSampler puts positives in every batch); under DDP the
gradients of ``a`` and ``b`` are averaged in one all-reduce instead of two (same values), and
:class:`FastPDSCA` averages them too, where libauc's PDSCA lets each rank's drift apart.

The arithmetic lives in pure functions over tensor lists; the Python counters (``T``, ``steps``,
Adam's per-tensor ``step``) stay outside them, so ``compile=True`` can hand the functions to
``torch.compile`` without losing a count (compiling libauc's whole ``step`` silently drops them).
"""

import math

import torch
from libauc.losses import AUCMLoss
from libauc.optimizers import PDSCA, PESG

Tensors = list[torch.Tensor]


class FastAUCMLoss(AUCMLoss):
    """libauc's AUCMLoss (both versions, same arithmetic) without the per-step host sync."""

    def forward(self, y_pred, y_true, auto=True, **kwargs):
        y_pred = y_pred.reshape(-1, 1)
        y_true = y_true.reshape(-1, 1)
        positive = (y_true == 1).float()
        negative = (y_true == 0).float()
        if self.version == "v1":
            if auto or self.p is None:
                self.p = positive.sum() / y_true.shape[0]
            p = self.p
            return (
                (1 - p) * torch.mean((y_pred - self.a) ** 2 * positive)
                + p * torch.mean((y_pred - self.b) ** 2 * negative)
                + 2
                * self.alpha
                * (
                    p * (1 - p) * self.margin
                    + torch.mean(p * y_pred * negative - (1 - p) * y_pred * positive)
                )
                - p * (1 - p) * self.alpha**2
            )
        return (
            self.mean((y_pred - self.a) ** 2 * positive)
            + self.mean((y_pred - self.b) ** 2 * negative)
            + 2
            * self.alpha
            * (self.margin + self.mean(y_pred * negative - self.mean(y_pred * positive)))
            - self.alpha**2
        )


# ---- the arithmetic, on lists of tensors --------------------------------------------------------


def _direction(params: Tensors, grads: Tensors, refs, *, clip, epoch_decay, weight_decay):
    """clamp(grad) + epoch_decay * (p - ref) + weight_decay * p, as libauc computes it."""
    direction = torch._foreach_clamp_min(grads, -clip)
    torch._foreach_clamp_max_(direction, clip)
    if epoch_decay > 0:
        pull = torch._foreach_sub(params, refs)
        torch._foreach_mul_(pull, epoch_decay)
        torch._foreach_add_(direction, pull)
    torch._foreach_add_(direction, torch._foreach_mul(params, weight_decay))
    return direction


def _momentum(buffers: Tensors, direction: Tensors, fresh: bool, weight: float) -> Tensors:
    """libauc's momentum: a fresh buffer is the direction, else (1 - w) * buffer + w * direction."""
    if fresh:
        torch._foreach_copy_(buffers, direction)
    else:
        torch._foreach_mul_(buffers, 1 - weight)
        torch._foreach_add_(buffers, direction, alpha=weight)
    return buffers


def _descend(params: Tensors, direction: Tensors, lr: float, accumulators) -> None:
    """p = p - lr * direction; the epoch's running sum of weights (model_acc) adds p."""
    torch._foreach_sub_(params, torch._foreach_mul(direction, lr))
    if accumulators is not None:
        torch._foreach_add_(accumulators, params)


def pesg_sgd_update(params, grads, refs, accs, buffers, *, fresh, lr, clip, epoch_decay,
                    weight_decay, momentum):  # fmt: skip
    direction = _direction(
        params, grads, refs, clip=clip, epoch_decay=epoch_decay, weight_decay=weight_decay
    )
    if momentum != 0:
        direction = _momentum(buffers, direction, fresh, momentum)
    _descend(params, direction, lr, accs)


def pesg_adam_update(params, grads, refs, accs, exp_avgs, exp_avg_sqs, max_sqs, *, step, lr,
                     clip, epoch_decay, weight_decay, betas, eps):  # fmt: skip
    beta1, beta2 = betas
    direction = _direction(
        params, grads, refs, clip=clip, epoch_decay=epoch_decay, weight_decay=weight_decay
    )
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, direction, alpha=1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, direction, direction, value=1 - beta2)
    if max_sqs is not None:  # amsgrad
        torch._foreach_maximum_(max_sqs, exp_avg_sqs)
    denominator = torch._foreach_sqrt(exp_avg_sqs if max_sqs is None else max_sqs)
    torch._foreach_div_(denominator, math.sqrt(1 - beta2**step))
    torch._foreach_add_(denominator, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denominator, value=-lr / (1 - beta1**step))
    if accs is not None:
        torch._foreach_add_(accs, params)


def pdsca_update(params, grads, refs, accs, buffers, *, auc_step, fresh, lr, lr0, clip,
                 epoch_decay, weight_decay, beta1, beta2):  # fmt: skip
    direction = _direction(
        params, grads, refs, clip=clip, epoch_decay=epoch_decay, weight_decay=weight_decay
    )
    if auc_step:  # AUC step: momentum on the direction
        if beta2 != 0:
            direction = _momentum(buffers, direction, fresh, beta2)
        _descend(params, direction, lr, accs)
        return
    # BCE step: a plain step, then the weights become their moving average
    _descend(params, direction, lr0, None)
    if beta1 != 0:
        _momentum(buffers, params, fresh, beta1)
        torch._foreach_copy_(params, buffers)
    if accs is not None:
        torch._foreach_add_(accs, params)


@torch.no_grad()
def ascend_alpha(alpha, a, b, margin: float, lr: float) -> None:
    """PESG's and PDSCA's ascent step for alpha, on the device (no host sync)."""
    alpha.copy_(torch.clamp(alpha + lr * (2 * (margin + b - a) - 2 * alpha), 0, 999))


# ---- the optimizers -----------------------------------------------------------------------------


class _MultiTensorStep:
    """What the fast PESG and PDSCA share: gathering tensor lists, DDP averaging of a and b."""

    @torch.no_grad()
    def step(self, closure=None):
        """libauc's step: each group's update, then the counters (kept in Python, outside any
        compiled region: ``update_regularizer`` divides by ``T``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        self.T += 1
        self.steps += 1
        return loss

    def _setup_compile(self, compile: bool) -> None:
        self.compiled = bool(compile)
        self._updates = {}

    def _update(self, function):
        """``function`` itself, or compiled once per optimizer when ``compile=True``."""
        if not self.compiled:
            return function
        if function not in self._updates:
            self._updates[function] = torch.compile(function, dynamic=False)
        return self._updates[function]

    def _with_grads(self, group):
        """(indices, params, grads) of the group's tensors that have a gradient."""
        indexed = [(i, p) for i, p in enumerate(group["params"]) if p.grad is not None]
        return (
            [i for i, _ in indexed],
            [p for _, p in indexed],
            [p.grad for _, p in indexed],
        )

    @staticmethod
    def _lists(group, indices):
        """The group's model_ref and model_acc entries at ``indices`` (None without epoch_decay)."""
        if group["epoch_decay"] <= 0:
            return None, None
        return [group["model_ref"][i] for i in indices], [group["model_acc"][i] for i in indices]

    def _average_dual_grads(self, group) -> None:
        """Under DDP, a and b see only this rank's batch: average their gradients over ranks
        (the network's are averaged by DDP). One all-reduce for both."""
        if not self.distributed:
            return
        grads = [v.grad for v in (group["a"], group["b"]) if v is not None and v.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat.div_(self.world_size)
        pieces = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(
            grads, [piece.view_as(g) for piece, g in zip(pieces, grads, strict=True)]
        )

    def _by_buffer(self, params, grads, refs, accs, name: str | None):
        """The tensors in parts by whether their state buffer ``name`` exists yet, each part with
        its buffers: a tensor that first gets a gradient now starts a fresh buffer, as in
        libauc, while the others go on with theirs. ``name`` None: one part, no buffers."""
        if name is None:
            yield params, grads, refs, accs, [], False
            return
        fresh = [name not in self.state[p] for p in params]
        for is_fresh in (False, True):
            positions = [i for i, f in enumerate(fresh) if f == is_fresh]
            if not positions:
                continue
            part = _pick(params, positions)
            for p in part if is_fresh else []:
                self.state[p][name] = torch.empty_like(p, memory_format=torch.preserve_format)
            buffers = [self.state[p][name] for p in part]
            yield (
                part,
                _pick(grads, positions),
                _pick(refs, positions),
                _pick(accs, positions),
                buffers,
                is_fresh,
            )


def _pick(tensors, positions):
    return None if tensors is None else [tensors[i] for i in positions]


class FastPESG(_MultiTensorStep, PESG):
    """libauc's PESG whose ``step`` runs on lists of tensors. ``compile=True`` compiles the
    update arithmetic with ``torch.compile``."""

    def __init__(self, params, loss_fn, compile: bool = False, **options):
        super().__init__(params, loss_fn, **options)
        self._setup_compile(compile)

    def _step_group(self, group) -> None:
        self.lr = group["lr"]
        self._average_dual_grads(group)
        indices, params, grads = self._with_grads(group)
        if params:
            refs, accs = self._lists(group, indices)
            common = dict(
                lr=group["lr"],
                clip=group["clip_value"],
                epoch_decay=group["epoch_decay"],
                weight_decay=group["weight_decay"],
            )
            if self.mode == "sgd":
                self._sgd(group, params, grads, refs, accs, common)
            else:
                self._adam(group, params, grads, refs, accs, common)
        alpha = group["alpha"]
        if alpha is not None and alpha.grad is not None:
            ascend_alpha(alpha, group["a"], group["b"], group["margin"], group["lr"])

    def _sgd(self, group, params, grads, refs, accs, common):
        momentum = group["momentum"]
        name = "momentum_buffer" if momentum != 0 else None
        for *part, buffers, fresh in self._by_buffer(params, grads, refs, accs, name):
            self._update(pesg_sgd_update)(*part, buffers, fresh=fresh, momentum=momentum, **common)

    def _adam(self, group, params, grads, refs, accs, common):
        amsgrad = group["amsgrad"]
        # Adam's step count is per tensor (libauc's layout); tensors that missed steps are
        # updated in their own call.
        by_step: dict[int, list[int]] = {}
        for position, p in enumerate(params):
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if amsgrad:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
            state["step"] += 1
            by_step.setdefault(state["step"], []).append(position)
        for step, positions in by_step.items():
            states = [self.state[params[i]] for i in positions]
            self._update(pesg_adam_update)(
                _pick(params, positions),
                _pick(grads, positions),
                _pick(refs, positions),
                _pick(accs, positions),
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["max_exp_avg_sq"] for s in states] if amsgrad else None,
                step=step,
                betas=group["betas"],
                eps=group["eps"],
                **common,
            )


class FastPDSCA(_MultiTensorStep, PDSCA):
    """libauc's PDSCA whose ``step`` runs on lists of tensors (BCE steps and AUC steps alike)."""

    def __init__(self, params, loss_fn, compile: bool = False, **options):
        super().__init__(params, loss_fn, **options)
        self._setup_compile(compile)
        # Deliberately unlike libauc's PDSCA, which never averages a and b over DDP ranks (so
        # they drift apart): averaged as PESG does.
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.world_size = torch.distributed.get_world_size() if self.distributed else 1

    def _step_group(self, group) -> None:
        self.lr, self.lr0 = group["lr"], group["lr0"]
        alpha = group["alpha"]
        auc_step = alpha.grad is not None  # libauc's test: BCE steps leave alpha without grad
        if auc_step:
            self._average_dual_grads(group)
        indices, params, grads = self._with_grads(group)
        if params:
            refs, accs = self._lists(group, indices)
            beta = group["beta2"] if auc_step else group["beta1"]
            name = None if beta == 0 else "momentum_buffer" if auc_step else "weight_buffer"
            for *part, buffers, fresh in self._by_buffer(params, grads, refs, accs, name):
                self._update(pdsca_update)(
                    *part,
                    buffers,
                    auc_step=auc_step,
                    fresh=fresh,
                    lr=group["lr"],
                    lr0=group["lr0"],
                    clip=group["clip_value"],
                    epoch_decay=group["epoch_decay"],
                    weight_decay=group["weight_decay"],
                    beta1=group["beta1"],
                    beta2=group["beta2"],
                )
        if auc_step:
            ascend_alpha(alpha, group["a"], group["b"], group["margin"], group["lr"])
