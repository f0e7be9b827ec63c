"""Cross-entropy fine-tuning with Adam: the control every other method is compared against."""

from dataclasses import dataclass

from deepauc.methods.registry import BuildContext, Method, Recipe, register, setting


@dataclass(frozen=True)
class CeSettings:
    """The control: BCE with Adam."""

    lr: float = setting(1e-4, above=0)
    weight_decay: float = setting(1e-5, minimum=0)


def build_ce(model, settings: CeSettings, context: BuildContext) -> Recipe:
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    return Recipe(loss_fn=F.binary_cross_entropy_with_logits, optimizer=optimizer)


register(
    Method(
        name="ce",
        label="CE fine-tune",
        color="#6baed6",
        linestyle="--",
        loss_name="BCE",
        settings=CeSettings,
        build=build_ce,
    )
)
