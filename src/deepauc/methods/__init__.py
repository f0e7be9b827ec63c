"""The fine-tune methods: the registry (``deepauc.methods.registry``) and one module per method.

Every module of this package is imported here, so a method is one file: a module that calls
:func:`register` (for example ``deepauc/methods/my_method.py``); its settings class states its
config section (keys, defaults, limits), so the config needs a section only to change one.
The built-in methods come first, in the order figures and tables list them (CE, the control,
then DAM, then the compositional method, then partial-AUC maximization); any other module
follows, by name. Modules whose
name starts with ``_`` and the shared helpers (``registry``, ``auc_margin``, LibAUC's variants
in ``libauc_variants`` and their multi-tensor steps in ``fast_steps``) register nothing.
"""

import importlib
import pkgutil

from deepauc.methods.registry import (
    AUTO_MODE,
    CONTROL,
    METHODS,
    WARMUP,
    BuildContext,
    Method,
    Recipe,
    Style,
    dual_names,
    register,
    setting,
    style,
)

# Importing a module registers its method: this order is the figures' and tables'.
# isort: off
from deepauc.methods.ce import CeSettings, build_ce
from deepauc.methods.dam import DamSettings, build_dam
from deepauc.methods.compositional import CompositionalSettings, build_compositional
from deepauc.methods.pauc import PaucSettings, build_pauc

# isort: on

HELPERS = {"registry", "auc_margin", "libauc_variants", "fast_steps"}
BUILT_IN = ("ce", "dam", "compositional", "pauc")

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in HELPERS | set(BUILT_IN) and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AUTO_MODE",
    "CONTROL",
    "METHODS",
    "WARMUP",
    "BuildContext",
    "CeSettings",
    "CompositionalSettings",
    "DamSettings",
    "PaucSettings",
    "Method",
    "Recipe",
    "Style",
    "build_ce",
    "build_compositional",
    "build_dam",
    "build_pauc",
    "dual_names",
    "register",
    "setting",
    "style",
]
