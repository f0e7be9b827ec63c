"""Deep AUC Maximization: LibAUC's AUCMLoss + PESG (``deepauc.methods.libauc_variants`` holds our
subclasses)."""

from dataclasses import dataclass

from deepauc.methods.auc_margin import AUC_MARGIN_DUALS, auc_recipe, start_duals
from deepauc.methods.registry import BuildContext, Method, Recipe, register


@dataclass(frozen=True)
class DamSettings:
    """LibAUC's AUCMLoss + PESG. ``init_duals``, ``anchor`` choose where a fine-tune starts its
    dual variables and PESG's reference weights: ``class_means`` and ``start`` (ours), or
    ``zero`` and ``noise`` (libauc's own; see ``deepauc.methods.libauc_variants``)."""

    lr: float = 0.1
    margin: float = 1.0
    epoch_decay: float = 2e-3
    weight_decay: float = 1e-5
    loss_version: str = "v1"
    # PESG's own update rule: "sgd" (momentum) or "adam". The workflow's default, "auto", is
    # made one of them per architecture before a job starts (adam for LayerNorm-like networks).
    mode: str = "sgd"
    init_duals: str = "class_means"  # or "zero"
    anchor: str = "start"  # or "noise"
    implementation: str = "fast"  # or "libauc": same updates, libauc's per-tensor loop


def build_dam(model, settings: DamSettings, context: BuildContext) -> Recipe:
    from deepauc.methods.libauc_variants import aucm_loss_class, optimizer_class

    if settings.mode not in ("sgd", "adam"):
        raise ValueError(
            f"PESG mode {settings.mode!r}: the workflow resolves mode auto per architecture "
            "(deepauc.config.rates.resolve_pesg_modes) before a job starts; give sgd or adam here"
        )
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
