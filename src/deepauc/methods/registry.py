"""The fine-tune method registry: one entry per method, and everything else reads it.

A method is a :class:`Method`: its name (the config section ``finetune.<name>`` and the
``{method}`` wildcard), a frozen settings dataclass for that section, a ``build`` function that
turns a model into a :class:`Recipe` (loss, optimizer, learning-rate decay, extra state to
checkpoint, dual variables to report), and how figures and tables show it. The workflow's
allowed methods and fan-out, the summary, the comparison against the control and every figure
list methods from :data:`METHODS`. Adding a method is a module of ``deepauc.methods`` that makes
one :func:`register` call; its settings class states its config section (keys, defaults and
limits, :func:`setting`), so a config names it in ``finetune.methods`` and sets only what it
changes. Every method's section has an
``lr``: the config may give a list of rates, one fine-tune job each, and the best on val is kept
(equal tuning effort: the same grid size each).

The workflow imports the registry while it parses the Snakefile, so method modules keep torch
and libauc (seconds to import) inside their ``build`` functions, which only training jobs call.
"""

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The method every other fine-tune method is compared against (``results/comparison.csv``).
CONTROL = "ce"
#: The stage-1 model, scored beside the fine-tune methods but not one of them.
WARMUP = "warmup"
#: A method setting whose value ``auto`` is chosen per architecture from its normalization
#: (``deepauc.config.rates.resolve_pesg_modes``).
AUTO_MODE = "auto"


def setting(
    default: Any,
    *,
    choices: tuple = (),
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A field of a method's settings class with the values the config may give it: one of
    ``choices``, or a number at least ``minimum``, greater than ``above``, at most ``maximum``.
    The class is then the one statement of its section: its defaults fill the config's section
    (``deepauc.config.layers``) and its constraints check it while the workflow parses
    (``deepauc.config.settings.typed_section``)."""
    limits = {"choices": tuple(choices), "minimum": minimum, "above": above, "maximum": maximum}
    return dataclasses.field(
        default=default, metadata={k: v for k, v in limits.items() if v not in (None, ())}
    )


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
    train_size: int = 0  # training images of the job's disease (a per-sample loss's length)


@dataclass
class Recipe:
    """What a method adds to a fine-tune job: ``fit`` does the rest.

    ``loss_fn(logits, targets)`` gets fp32 logits of shape (batch, 1). ``decay(factor)`` divides
    the learning rate at the schedule's epochs (shared by all methods) and returns what it did,
    for the log. ``extra_state`` (a module, e.g. a loss with learnable parts) is saved in resume
    files and restored with them. ``duals()`` reports the method's dual variables, if any.
    With ``uses_index``, ``loss_fn(logits, targets, index)`` also gets each batch item's
    position among the job's training images (``BuildContext.train_size`` of them).
    """

    loss_fn: Callable[..., Any]
    optimizer: Any
    decay: Callable[[float], str] | None = None
    extra_state: Any = None
    duals: Callable[[], dict[str, float]] | None = None
    uses_index: bool = False

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
    linestyle: str | tuple  # a matplotlib line style: a name or a dash pattern
    loss_name: str  # what its training loss is, for the training-curve figure
    settings: type
    build: Callable[..., Recipe]
    duals: tuple[str, ...] = ()  # the names its recipe's ``duals()`` reports


#: name -> Method, in the order figures and tables list them.
METHODS: dict[str, Method] = {}


def dual_names() -> tuple[str, ...]:
    """Every registered method's dual variables, once each in registry order: the columns a
    fine-tune's history and ``diagnostics.csv`` give them (NaN where a method has none)."""
    return tuple(dict.fromkeys(name for method in METHODS.values() for name in method.duals))


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
    linestyle: str | tuple  # a matplotlib line style: a name or a dash pattern


def style(name: str) -> Style:
    """How figures draw ``name``: a registered method or the warm-up."""
    if name == WARMUP:
        return Style("Warm-up (multi-label CE)", "#9e9e9e", ":")
    method = METHODS[name]
    return Style(method.label, method.color, method.linestyle)
