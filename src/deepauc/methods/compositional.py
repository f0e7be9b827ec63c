"""Compositional AUC: LibAUC's CompositionalAUCLoss + PDSCA (Yuan et al., ICLR 2022)."""

from dataclasses import dataclass

from deepauc.methods.auc_margin import AUC_MARGIN_DUALS, auc_recipe, start_duals
from deepauc.methods.registry import BuildContext, Method, Recipe, register, setting


@dataclass(frozen=True)
class CompositionalSettings:
    """LibAUC's CompositionalAUCLoss + PDSCA (Yuan et al., ICLR 2022): steps on BCE and on the
    AUC-margin loss alternate, ``k`` each. ``lr`` is the AUC steps' rate; the BCE steps use the
    same (PDSCA's ``lr0``)."""

    lr: float = setting(0.1, above=0)
    margin: float = setting(1.0, above=0)
    epoch_decay: float = setting(2e-3, minimum=0)
    weight_decay: float = setting(1e-5, minimum=0)
    loss_version: str = setting("v1", choices=("v1", "v2"))
    k: int = setting(1, minimum=1)
    beta1: float = setting(0.99, minimum=0, maximum=1)
    beta2: float = setting(0.999, minimum=0, maximum=1)
    init_duals: str = setting("class_means", choices=("class_means", "zero"))
    anchor: str = setting("start", choices=("start", "noise"))
    implementation: str = setting("fast", choices=("fast", "libauc"))


def build_compositional(model, settings: CompositionalSettings, context: BuildContext) -> Recipe:
    from deepauc.methods.libauc_variants import ResumableCompositionalAUCLoss, optimizer_class

    loss = ResumableCompositionalAUCLoss(
        margin=settings.margin, k=settings.k, version=settings.loss_version, device=context.device
    )
    start_duals(loss, settings, context)
    optimizer = optimizer_class("pdsca", settings.anchor, settings.implementation, context.compile)(
        model.parameters(),
        loss_fn=loss,
        lr=settings.lr,
        beta1=settings.beta1,
        beta2=settings.beta2,
        margin=settings.margin,
        epoch_decay=settings.epoch_decay,
        weight_decay=settings.weight_decay,
        verbose=False,
        device=context.device,
    )

    # Both of PDSCA's rates (AUC steps and BCE steps) follow the shared schedule.
    return auc_recipe(loss, optimizer, settings.epoch_decay, inner=True)


register(
    Method(
        name="compositional",
        label="Compositional AUC fine-tune",
        color="#756bb1",
        linestyle="-.",
        loss_name="BCE/AUCM",
        settings=CompositionalSettings,
        build=build_compositional,
        duals=AUC_MARGIN_DUALS,
    )
)
