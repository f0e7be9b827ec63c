"""Deep AUC Maximization: LibAUC's AUCMLoss + PESG (``deepauc.methods.libauc_variants`` holds our
subclasses)."""

from dataclasses import dataclass

from deepauc.methods.auc_margin import AUC_MARGIN_DUALS, auc_recipe, start_duals
from deepauc.methods.registry import AUTO_MODE, BuildContext, Method, Recipe, register, setting


@dataclass(frozen=True)
class DamSettings:
    """LibAUC's AUCMLoss + PESG. ``init_duals``, ``anchor`` choose where a fine-tune starts its
    dual variables and PESG's reference weights: ``class_means`` and ``start`` (ours), or
    ``zero`` and ``noise`` (libauc's own; see ``deepauc.methods.libauc_variants``)."""

    lr: float = setting(0.1, above=0)
    margin: float = setting(1.0, above=0)
    epoch_decay: float = setting(2e-3, minimum=0)
    weight_decay: float = setting(1e-5, minimum=0)
    loss_version: str = setting("v1", choices=("v1", "v2"))
    # PESG's own update rule: "sgd" (momentum) or "adam". "auto" (the protocol's) is made one
    # of them per architecture before a job starts (adam for LayerNorm-like networks).
    mode: str = setting("sgd", choices=(AUTO_MODE, "sgd", "adam"))
    init_duals: str = setting("class_means", choices=("class_means", "zero"))
    anchor: str = setting("start", choices=("start", "noise"))
    # "libauc": the same updates with libauc's per-tensor loop
    implementation: str = setting("fast", choices=("fast", "libauc"))


def build_dam(model, settings: DamSettings, context: BuildContext) -> Recipe:
    from deepauc.methods.libauc_variants import aucm_loss_class, check_pesg_mode, optimizer_class

    check_pesg_mode(settings.mode)
    context.log.info("PESG mode %s at lr %g", settings.mode, settings.lr)
    loss_class = aucm_loss_class(settings.implementation)
    aucm = loss_class(margin=settings.margin, version=settings.loss_version, device=context.device)
    start_duals(aucm, settings, context)
    optimizer = optimizer_class("pesg", settings.anchor, settings.implementation, context.compile)(
        model.parameters(),
        loss_fn=aucm,
        lr=settings.lr,
        mode=settings.mode,
        margin=settings.margin,
        epoch_decay=settings.epoch_decay,
        weight_decay=settings.weight_decay,
        verbose=False,
        device=context.device,
    )

    return auc_recipe(aucm, optimizer, settings.epoch_decay)


register(
    Method(
        name="dam",
        label="DAM fine-tune",
        color="#08519c",
        linestyle="-",
        loss_name="AUCM",
        settings=DamSettings,
        build=build_dam,
        duals=AUC_MARGIN_DUALS,
    )
)
