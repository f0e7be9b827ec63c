"""AUCM loss with Adam: DAM's loss without PESG (one cell of the {AUCM, BCE} x {PESG, Adam} 2 x 2).

LibAUC's AUCMLoss, started as DAM starts it (dual variables at the class means of the starting
model's scores), minimised over the network and ``a``, ``b`` by plain Adam, as CE's network is,
with ``alpha`` ascended by Adam too (``maximize``) and kept in PESG's range [0, 999]. There is no
anchor to the starting weights (PESG's ``epoch_decay``): set against ``dam`` it isolates the
optimizer, set against ``ce`` the loss.
"""

from dataclasses import dataclass

from deepauc.methods.auc_margin import AUC_MARGIN_DUALS, start_duals
from deepauc.methods.registry import BuildContext, Method, Recipe, register, setting

#: PESG's range for alpha (libauc clamps its ascent step to it).
ALPHA_RANGE = (0.0, 999.0)


@dataclass(frozen=True)
class AucmAdamSettings:
    """AUCMLoss (libauc) with Adam. ``weight_decay`` is CE's, on the network only."""

    lr: float = setting(1e-4, above=0)
    margin: float = setting(1.0, above=0)
    weight_decay: float = setting(1e-5, minimum=0)
    loss_version: str = setting("v1", choices=("v1", "v2"))
    init_duals: str = setting("class_means", choices=("class_means", "zero"))
    implementation: str = setting("fast", choices=("fast", "libauc"))


def saddle_adam(model_params, loss, lr: float, weight_decay: float):
    """Adam descending on the network and ``loss.a``, ``loss.b`` and ascending on
    ``loss.alpha``, which each step then clamps to :data:`ALPHA_RANGE`. Under DDP the dual
    variables' gradients (each rank's own batch) are averaged over ranks first, as PESG does."""
    import torch

    class SaddleAdam(torch.optim.Adam):
        @torch.no_grad()
        def step(self, closure=None):
            duals = [v for v in (loss.a, loss.b, loss.alpha) if v.grad is not None]
            if duals and torch.distributed.is_available() and torch.distributed.is_initialized():
                world = torch.distributed.get_world_size()
                for value in duals:
                    torch.distributed.all_reduce(value.grad)
                    value.grad.div_(world)
            result = super().step(closure)
            loss.alpha.clamp_(*ALPHA_RANGE)
            return result

    return SaddleAdam(
        [
            {"params": list(model_params), "weight_decay": weight_decay},
            {"params": [loss.a, loss.b], "weight_decay": 0.0},
            {"params": [loss.alpha], "weight_decay": 0.0, "maximize": True},
        ],
        lr=lr,
    )


def build_aucm_adam(model, settings: AucmAdamSettings, context: BuildContext) -> Recipe:
    import torch

    from deepauc.methods.libauc_variants import aucm_loss_class

    loss = aucm_loss_class(settings.implementation)(
        margin=settings.margin, version=settings.loss_version, device=context.device
    )
    start_duals(loss, settings, context)
    optimizer = saddle_adam(model.parameters(), loss, settings.lr, settings.weight_decay)

    def loss_fn(logits, targets):
        return loss(torch.sigmoid(logits), targets).squeeze()

    def duals() -> dict[str, float]:
        return {name: float(getattr(loss, name).detach()) for name in AUC_MARGIN_DUALS}

    return Recipe(loss_fn=loss_fn, optimizer=optimizer, extra_state=loss, duals=duals)


register(
    Method(
        name="aucm_adam",
        label="AUCM + Adam fine-tune",
        color="#31a354",
        linestyle=(0, (5, 1, 1, 1)),
        loss_name="AUCM",
        settings=AucmAdamSettings,
        build=build_aucm_adam,
        duals=AUC_MARGIN_DUALS,
    )
)
