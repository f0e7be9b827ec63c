"""BCE with PESG: DAM's optimizer without the AUCM loss (one cell of the {AUCM, BCE} x
{PESG, Adam} 2 x 2).

Binary cross-entropy, as CE, stepped by LibAUC's PESG exactly as DAM is: its clipped update in
the same mode (``auto``: per architecture), weight decay, and the anchor to the starting weights
(``epoch_decay``, reference weights at the start and moved to the epoch's average on the shared
schedule). PESG has no dual variables to step here: it gets a loss without them. Set against
``dam`` it isolates the loss, set against ``ce`` the optimizer.
"""

from dataclasses import dataclass

from deepauc.methods.auc_margin import regularizer_decay
from deepauc.methods.registry import AUTO_MODE, BuildContext, Method, Recipe, register, setting


@dataclass(frozen=True)
class BcePesgSettings:
    """BCE with LibAUC's PESG (DAM's optimizer settings)."""

    lr: float = setting(0.1, above=0)
    epoch_decay: float = setting(2e-3, minimum=0)
    weight_decay: float = setting(1e-5, minimum=0)
    mode: str = setting("sgd", choices=(AUTO_MODE, "sgd", "adam"))
    anchor: str = setting("start", choices=("start", "noise"))
    implementation: str = setting("fast", choices=("fast", "libauc"))


class NoDuals:
    """What PESG reads off its ``loss_fn``, for a loss without dual variables: PESG then steps
    the network alone (libauc's own check is ``alpha is not None``)."""

    a = b = alpha = margin = None


def build_bce_pesg(model, settings: BcePesgSettings, context: BuildContext) -> Recipe:
    import torch.nn.functional as F

    from deepauc.methods.libauc_variants import check_pesg_mode, optimizer_class

    check_pesg_mode(settings.mode)
    context.log.info("PESG mode %s at lr %g on BCE", settings.mode, settings.lr)
    optimizer = optimizer_class("pesg", settings.anchor, settings.implementation, context.compile)(
        model.parameters(),
        loss_fn=NoDuals(),
        lr=settings.lr,
        mode=settings.mode,
        epoch_decay=settings.epoch_decay,
        weight_decay=settings.weight_decay,
        verbose=False,
        device=context.device,
    )
    return Recipe(
        loss_fn=F.binary_cross_entropy_with_logits,
        optimizer=optimizer,
        decay=regularizer_decay(optimizer, settings.epoch_decay),
    )


register(
    Method(
        name="bce_pesg",
        label="BCE + PESG fine-tune",
        color="#e6550d",
        linestyle=(0, (3, 1, 1, 1, 1, 1)),
        loss_name="BCE",
        settings=BcePesgSettings,
        build=build_bce_pesg,
    )
)
