"""Partial-AUC maximization: LibAUC's pAUC_DRO_Loss + SOPAs (Zhu et al., ICML 2022), one-way
partial AUC (the low false-positive region) by KL-regularized distributionally robust
optimization over the negatives of each positive.

The loss keeps one moving average per training positive (``u_pos``, indexed by the sample's
position among the job's training images), so its batches carry sample indices
(``Recipe.uses_index``); our subclass makes that state part of the loss's state dict, so a
resumed job continues from it (:class:`deepauc.methods.libauc_variants.ResumablePAUCDROLoss`).
"""

from dataclasses import dataclass

from deepauc.methods.registry import BuildContext, Method, Recipe, register, setting


@dataclass(frozen=True)
class PaucSettings:
    """LibAUC's pAUC_DRO_Loss + SOPAs. ``gamma``: the moving average's step for ``u_pos``;
    ``dro_lambda``: the KL regularization's weight (libauc's ``Lambda``: smaller weighs the
    hardest negatives more, i.e. a smaller false-positive range); ``margin``: the squared-hinge
    surrogate's. ``mode``: SOPAs' update (adam or momentum sgd; both clip gradients at
    ``clip_value``). ``epoch_decay`` > 0 pulls weights toward the starting model (ours; libauc's
    reference starts as noise). ``implementation``: ``fast`` computes libauc's loss without
    host syncs and SOPAs' update on tensor lists (``FastPAUCDROLoss``, ``FastSOPAs``);
    ``libauc`` runs libauc's own forward and per-tensor loop."""

    lr: float = setting(1e-4, above=0)
    mode: str = setting("adam", choices=("adam", "sgd"))
    gamma: float = setting(0.9, above=0, maximum=1)
    margin: float = setting(1.0, above=0)
    dro_lambda: float = setting(1.0, above=0)
    clip_value: float = setting(2.0, above=0)
    weight_decay: float = setting(1e-5, minimum=0)
    epoch_decay: float = setting(0.0, minimum=0)
    # "libauc": libauc's forward (host syncs each step) and SOPAs' per-tensor loop
    implementation: str = setting("fast", choices=("fast", "libauc"))


def build_pauc(model, settings: PaucSettings, context: BuildContext) -> Recipe:
    import torch

    from deepauc.methods.libauc_variants import (
        AnchoredSOPAs,
        FastPAUCDROLoss,
        FastSOPAs,
        ResumablePAUCDROLoss,
    )

    if context.train_size <= 0:
        raise ValueError("the partial-AUC loss needs the number of training images")
    loss = (FastPAUCDROLoss if settings.implementation == "fast" else ResumablePAUCDROLoss)(
        data_len=context.train_size,
        gamma=settings.gamma,
        margin=settings.margin,
        Lambda=settings.dro_lambda,
        device=context.device,
    )
    fast = settings.implementation == "fast"
    optimizer = (FastSOPAs if fast else AnchoredSOPAs)(
        model.parameters(),
        lr=settings.lr,
        mode=settings.mode,
        clip_value=settings.clip_value,
        weight_decay=settings.weight_decay,
        epoch_decay=settings.epoch_decay,
        verbose=False,
        device=context.device,
    )
    context.log.info(
        "pAUC DRO: SOPAs %s at lr %g, lambda %g, gamma %g over %d training images",
        settings.mode,
        settings.lr,
        settings.dro_lambda,
        settings.gamma,
        context.train_size,
    )

    def loss_fn(logits, targets, index):
        return loss(torch.sigmoid(logits), targets, index)

    def decay(factor: float) -> str:
        if settings.epoch_decay > 0:
            optimizer.update_regularizer(decay_factor=factor)
            return f"lr now {optimizer.param_groups[0]['lr']:g}, reference weights moved"
        for group in optimizer.param_groups:  # SOPAs.update_lr prints: divided here instead
            group["lr"] /= factor
        return f"lr now {optimizer.param_groups[0]['lr']:g}"

    return Recipe(
        loss_fn=loss_fn, optimizer=optimizer, decay=decay, extra_state=loss, uses_index=True
    )


register(
    Method(
        name="pauc",
        label="Partial-AUC fine-tune",
        color="#e6550d",
        linestyle=(0, (5, 1, 1, 1)),
        loss_name="pAUC-DRO",
        settings=PaucSettings,
        build=build_pauc,
    )
)
