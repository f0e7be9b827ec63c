"""What the AUC-margin methods share (DAM's AUCMLoss + PESG, the compositional loss + PDSCA):
their recipe, their dual variables' start and their step on the shared schedule."""

from collections.abc import Callable

from deepauc.methods.registry import BuildContext, Recipe

#: The dual variables of libauc's AUC-margin losses (the ``duals`` of their methods).
AUC_MARGIN_DUALS = ("a", "b", "alpha")


def auc_recipe(loss, optimizer, epoch_decay: float, inner: bool = False) -> Recipe:
    """The recipe of a libauc AUC-margin loss (on sigmoid scores) and its optimizer: decay on
    the shared schedule, the loss's a, b, alpha checkpointed and reported."""
    import torch

    def loss_fn(logits, targets):
        return loss(torch.sigmoid(logits), targets).squeeze()

    def duals() -> dict[str, float]:
        return {name: float(getattr(loss, name).detach()) for name in AUC_MARGIN_DUALS}

    return Recipe(
        loss_fn=loss_fn,
        optimizer=optimizer,
        decay=regularizer_decay(optimizer, epoch_decay, inner),
        extra_state=loss,
        duals=duals,
    )


def start_duals(loss, settings, context: BuildContext) -> None:
    if settings.init_duals != "class_means":
        return
    from deepauc.methods.libauc_variants import init_duals_from_scores

    scores, labels = context.start_scores()
    a, b, alpha = init_duals_from_scores(loss, scores, labels)
    context.log.info("dual variables from class means: a %.4f, b %.4f, alpha %.4f", a, b, alpha)


def regularizer_decay(optimizer, epoch_decay: float, inner: bool = False) -> Callable:
    """The shared schedule's step for PESG and PDSCA (``inner``: PDSCA's BCE-step rate too)."""

    def decay(factor: float) -> str:
        factors = {"decay_factor": factor, **({"decay_factor0": factor} if inner else {})}
        if epoch_decay > 0:
            optimizer.update_regularizer(**factors)
            done = ", reference weights moved to the epoch's average"
        else:  # no reference weights kept then, and update_regularizer would fail
            optimizer.update_lr(**factors)
            done = ""
        return f"lr now {optimizer.param_groups[0]['lr']:g}{done}"

    return decay
