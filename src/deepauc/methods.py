"""The fine-tune methods: one registry entry each, and everything else reads the registry.

A method is a :class:`Method`: its name (the config section ``finetune.<name>`` and the
``{method}`` wildcard), a frozen settings dataclass for that section, a ``build`` function that
turns a model into a :class:`Recipe` (loss, optimizer, learning-rate decay, extra state to
checkpoint, dual variables to report), and how figures and tables show it. The workflow's
allowed methods and fan-out, the summary, the comparison against the control and every figure
list methods from :data:`METHODS`. Adding a method is one :func:`register` call plus its section
in the config. Every method's section has an ``lr``: the config may give a list of rates, one
fine-tune job each, and the best on val is kept (equal tuning effort: the same grid size each).

This module is imported by the workflow while it parses the Snakefile, so it keeps torch and
libauc (seconds to import) inside the ``build`` functions, which only training jobs call.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The method every other fine-tune method is compared against (``results/comparison.csv``).
CONTROL = "ce"
#: The stage-1 model, scored beside the fine-tune methods but not one of them.
WARMUP = "warmup"


@dataclass
class BuildContext:
    """What a method's ``build`` may use besides the model and its settings.

    ``start_scores()`` returns the starting model's sigmoid scores and labels on a sample of the
    training images of the job's disease (computed on first call).
    """

    device: Any
    log: logging.Logger
    start_scores: Callable[[], tuple[Any, Any]]
    compile: bool = False  # the runtime's ``compile``: fast optimizers compile their update


@dataclass
class Recipe:
    """What a method adds to a fine-tune job: ``fit`` does the rest.

    ``loss_fn(logits, targets)`` gets fp32 logits of shape (batch, 1). ``decay(factor)`` divides
    the learning rate at the schedule's epochs (shared by all methods) and returns what it did,
    for the log. ``extra_state`` (a module, e.g. a loss with learnable parts) is saved in resume
    files and restored with them. ``duals()`` reports the method's dual variables, if any.
    """

    loss_fn: Callable[[Any, Any], Any]
    optimizer: Any
    decay: Callable[[float], str] | None = None
    extra_state: Any = None
    duals: Callable[[], dict[str, float]] | None = None

    def __post_init__(self):
        if self.decay is None:
            self.decay = self._divide_lr

    def _divide_lr(self, factor: float) -> str:
        for group in self.optimizer.param_groups:
            group["lr"] /= factor
        return f"lr now {self.optimizer.param_groups[0]['lr']:g}"


@dataclass(frozen=True)
class Method:
    """One fine-tune method. ``build(model, settings, context)`` returns its :class:`Recipe`
    for ``model`` (already on the device); ``settings`` is an instance of ``settings``."""

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


# ---- Deep AUC Maximization: LibAUC's AUCMLoss + PESG ----------------------------------------


@dataclass(frozen=True)
class DamSettings:
    """LibAUC's AUCMLoss + PESG. ``init_duals``, ``anchor`` choose where a fine-tune starts its
    dual variables and PESG's reference weights: ``class_means`` and ``start`` (ours), or
    ``zero`` and ``noise`` (libauc's own; see ``deepauc.dam``)."""

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


def _auc_recipe(loss, optimizer, epoch_decay: float, inner: bool = False) -> Recipe:
    """The recipe of a libauc AUC-margin loss (on sigmoid scores) and its optimizer: decay on
    the shared schedule, the loss's a, b, alpha checkpointed and reported."""
    import torch

    def loss_fn(logits, targets):
        return loss(torch.sigmoid(logits), targets).squeeze()

    def duals() -> dict[str, float]:
        return {name: float(getattr(loss, name).detach()) for name in ("a", "b", "alpha")}

    return Recipe(
        loss_fn=loss_fn,
        optimizer=optimizer,
        decay=_regularizer_decay(optimizer, epoch_decay, inner),
        extra_state=loss,
        duals=duals,
    )


def _start_duals(loss, settings, context: BuildContext) -> None:
    if settings.init_duals != "class_means":
        return
    from deepauc.dam import init_duals_from_scores

    scores, labels = context.start_scores()
    a, b, alpha = init_duals_from_scores(loss, scores, labels)
    context.log.info("dual variables from class means: a %.4f, b %.4f, alpha %.4f", a, b, alpha)


def _regularizer_decay(optimizer, epoch_decay: float, inner: bool = False) -> Callable:
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


def build_dam(model, settings: DamSettings, context: BuildContext) -> Recipe:
    from deepauc.dam import aucm_loss_class, optimizer_class

    if settings.mode not in ("sgd", "adam"):
        raise ValueError(
            f"PESG mode {settings.mode!r}: the workflow resolves mode auto per architecture "
            "(deepauc.rates.resolve_pesg_modes) before a job starts; give sgd or adam here"
        )
    context.log.info("PESG mode %s at lr %g", settings.mode, settings.lr)
    loss_class = aucm_loss_class(settings.implementation)
    aucm = loss_class(margin=settings.margin, version=settings.loss_version, device=context.device)
    _start_duals(aucm, settings, context)
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

    return _auc_recipe(aucm, optimizer, settings.epoch_decay)


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


# ---- Compositional AUC: LibAUC's CompositionalAUCLoss + PDSCA ---------------------------------


@dataclass(frozen=True)
class CompositionalSettings:
    """LibAUC's CompositionalAUCLoss + PDSCA (Yuan et al., ICLR 2022): steps on BCE and on the
    AUC-margin loss alternate, ``k`` each. ``lr`` is the AUC steps' rate; the BCE steps use the
    same (PDSCA's ``lr0``)."""

    lr: float = 0.1
    margin: float = 1.0
    epoch_decay: float = 2e-3
    weight_decay: float = 1e-5
    loss_version: str = "v1"
    k: int = 1
    beta1: float = 0.99
    beta2: float = 0.999
    init_duals: str = "class_means"  # or "zero"
    anchor: str = "start"  # or "noise"
    implementation: str = "fast"  # or "libauc"


def build_compositional(model, settings: CompositionalSettings, context: BuildContext) -> Recipe:
    from deepauc.dam import ResumableCompositionalAUCLoss, optimizer_class

    loss = ResumableCompositionalAUCLoss(
        margin=settings.margin, k=settings.k, version=settings.loss_version, device=context.device
    )
    _start_duals(loss, settings, context)
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
    return _auc_recipe(loss, optimizer, settings.epoch_decay, inner=True)


register(
    Method(
        name="compositional",
        label="Compositional AUC fine-tune",
        color="#756bb1",
        linestyle="-.",
        loss_name="BCE/AUCM",
        settings=CompositionalSettings,
        build=build_compositional,
    )
)
