"""The fine-tune methods: one registry entry each, and everything else reads the registry.

A method is a :class:`Method`: its name (the config section ``finetune.<name>`` and the
``{method}`` wildcard), a frozen settings dataclass for that section, a ``build`` function that
turns a model into a :class:`Recipe` (loss, optimizer, per-epoch hook, extra state to
checkpoint), and how figures and tables show it. The workflow's allowed methods and fan-out, the
summary, the comparison against the control and every figure list methods from :data:`METHODS`.
Adding a method is one :func:`register` call plus its section in the config.

This module is imported by the workflow while it parses the Snakefile, so it keeps torch and
libauc (seconds to import) inside the ``build`` functions, which only training jobs call.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: The method every other fine-tune method is compared against (``results/comparison.csv``).
CONTROL = "ce"
#: The stage-1 model, scored beside the fine-tune methods but not one of them.
WARMUP = "warmup"


@dataclass
class Recipe:
    """What a method adds to a fine-tune job: ``fit`` does the rest.

    ``loss_fn(logits, targets)`` gets fp32 logits of shape (batch, 1). ``after_epoch(epoch)``
    runs after each epoch's evaluation. ``extra_state`` (a module, e.g. a loss with learnable
    parts) is saved in resume files and restored with them.
    """

    loss_fn: Callable[[Any, Any], Any]
    optimizer: Any
    after_epoch: Callable[[int], None] = field(default=lambda epoch: None)
    extra_state: Any = None


@dataclass(frozen=True)
class Method:
    """One fine-tune method. ``build(model, settings, device, log)`` returns its :class:`Recipe`
    for ``model`` (already on ``device``); ``settings`` is an instance of ``settings``."""

    name: str
    label: str  # legends and tables
    color: str
    linestyle: str
    loss_name: str  # what its training loss is, for the training-curve figure
    settings: type
    build: Callable[..., Recipe]


#: name -> Method, in the order figures and tables list them.
METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a name may be registered once)."""
    if method.name in METHODS or method.name == WARMUP:
        raise ValueError(f"a method named {method.name!r} is registered already")
    METHODS[method.name] = method
    return method


@dataclass(frozen=True)
class Style:
    label: str
    color: str
    linestyle: str


def style(name: str) -> Style:
    """How figures draw ``name``: a registered method or the warm-up."""
    if name == WARMUP:
        return Style("Warm-up (multi-label CE)", "#9e9e9e", ":")
    method = METHODS[name]
    return Style(method.label, method.color, method.linestyle)


# ---- cross-entropy: the control ---------------------------------------------------------------


@dataclass(frozen=True)
class CeSettings:
    """The control: BCE with Adam."""

    lr: float = 1e-4
    weight_decay: float = 1e-5


def build_ce(model, settings: CeSettings, device, log) -> Recipe:
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


# ---- Deep AUC Maximization: LibAUC's AUCMLoss + PESG ----------------------------------------


@dataclass(frozen=True)
class DamSettings:
    """LibAUC's AUCMLoss + PESG, at the defaults of its CheXpert recipe."""

    lr: float = 0.1
    margin: float = 1.0
    epoch_decay: float = 2e-3
    weight_decay: float = 1e-5
    loss_version: str = "v1"
    mode: str = "sgd"  # PESG's own update rule: "sgd" (momentum) or "adam"
    decay_factor: float = 10.0
    regularizer_epochs: tuple[int, ...] = (1,)  # update_regularizer after these epochs


def build_dam(model, settings: DamSettings, device, log) -> Recipe:
    import torch
    from libauc.losses import AUCMLoss
    from libauc.optimizers import PESG

    aucm = AUCMLoss(margin=settings.margin, version=settings.loss_version, device=device)
    optimizer = PESG(
        model.parameters(),
        loss_fn=aucm,
        lr=settings.lr,
        mode=settings.mode,
        margin=settings.margin,
        epoch_decay=settings.epoch_decay,
        weight_decay=settings.weight_decay,
        verbose=False,
        device=device,
    )

    def loss_fn(logits, targets):
        return aucm(torch.sigmoid(logits), targets).squeeze()

    def after_epoch(epoch: int) -> None:
        if epoch not in settings.regularizer_epochs:
            return
        if settings.epoch_decay > 0:
            optimizer.update_regularizer(decay_factor=settings.decay_factor)
        else:  # PESG keeps no reference weights then, and update_regularizer would fail
            optimizer.update_lr(decay_factor=settings.decay_factor)
        log.info(
            "after epoch %d: lr now %g%s",
            epoch,
            optimizer.param_groups[0]["lr"],
            ", reference weights updated" if settings.epoch_decay > 0 else "",
        )

    return Recipe(loss_fn=loss_fn, optimizer=optimizer, after_epoch=after_epoch, extra_state=aucm)


register(
    Method(
        name="dam",
        label="DAM fine-tune",
        color="#08519c",
        linestyle="-",
        loss_name="AUCM",
        settings=DamSettings,
        build=build_dam,
    )
)
