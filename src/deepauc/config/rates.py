"""Learning-rate grids: which rates a fine-tune tries, how a grid grows, and PESG's mode.

Each method's ``finetune.<method>.lr`` is one rate or a grid (DAM: one per PESG mode, the mode
``auto`` resolved per architecture from its normalization). Every rate is a job of its own,
named in paths by :func:`lr_label`; where the best rate of a grid lies on an edge, the grid grows
one step past it (:func:`grid_extension`), the same rule for every method. Free of torch, like
``deepauc.config.settings``: the workflow plans jobs with it while it parses.
"""

import copy
import math
from dataclasses import fields

from deepauc.config.checks import check_value
from deepauc.errors import InputError
from deepauc.methods import AUTO_MODE, METHODS


def method_section(section: dict, method: str, arch: str | None = None) -> dict:
    """A method's config section, with the architecture's overrides
    (``finetune.overrides.<arch>.<method>``) applied."""
    own = dict(section.get(method, {}))
    if arch is not None:
        own.update(section.get("overrides", {}).get(arch, {}).get(method, {}))
    return own


def lr_grid(section: dict, method: str, arch: str | None = None) -> list[float]:
    """The learning rates tried for ``method`` on ``arch``: its section's ``lr``, one rate or a
    list, or (DAM) one of those per PESG mode, taken for the section's mode; the registry's
    default when the section has none. Modes must be resolved (:func:`resolve_pesg_modes`)."""
    own = method_section(section, method, arch)
    rates = own.get("lr", METHODS[method].settings().lr)
    if isinstance(rates, dict):
        rates = _rates_for_mode(rates, own.get("mode", AUTO_MODE), method, arch)
    rates = rates if isinstance(rates, list) else [rates]
    where = f"config key finetune.{method}.lr" + (f" (architecture {arch})" if arch else "")
    for rate in rates:
        check_value(rate, float, {"above": 0}, where)
    if not rates or len(set(rates)) < len(rates):
        raise InputError(
            f"{rates} is not a grid of distinct rates",
            where=where,
            fix="give one rate, or a list of different rates (one fine-tune job each).",
        )
    return sorted(float(r) for r in rates)


def _rates_for_mode(rates: dict, mode: str, method: str, arch: str | None) -> list | float:
    where = f"config key finetune.{method}.lr" + (f" (architecture {arch})" if arch else "")
    modes = [m for m in _mode_choices(method) if m != AUTO_MODE]
    unknown = [m for m in rates if m not in modes]
    if unknown or not rates:
        raise InputError(
            f"gives rates per PESG mode, and {unknown or 'none'} is not one of its modes",
            where=where,
            fix=f"key the rates by {' and '.join(modes) or 'mode'}, or give one list of rates.",
        )
    if mode not in rates:
        raise InputError(
            f"gives rates per PESG mode ({', '.join(rates)}), none for mode {mode!r}",
            where=where,
            fix=f"add {mode}: [rates] to it, or set finetune.{method}.mode to one it has.",
        )
    return rates[mode]


def resolve_pesg_modes(section: dict, architectures: list[str], auto_modes) -> tuple[dict, dict]:
    """The ``finetune`` section with every method's ``mode: auto`` made explicit per
    architecture, and the rates of that mode taken where ``lr`` gives them per mode.

    ``auto_modes(archs)`` returns each architecture's mode (``deepauc.models.normalization``: adam
    for networks normalized by LayerNorm-like layers, sgd for BatchNorm ones), asked only when some
    architecture's mode is ``auto``. The result lands in ``overrides.<arch>.<method>``, so every
    job's params hold the mode it runs, and an explicit mode (in the section or an override)
    wins. Returns (section, {(arch, method): mode} for the modes that were ``auto``)."""
    resolved = copy.deepcopy(section)
    modal = [m for m in section["methods"] if "mode" in _field_names(m)]
    pending = [
        (arch, method)
        for arch in architectures
        for method in modal
        if method_section(section, method, arch).get("mode", AUTO_MODE) == AUTO_MODE
    ]
    chosen = auto_modes(sorted({arch for arch, _ in pending})) if pending else {}
    picked = {}
    for arch in architectures:
        for method in modal:
            own = method_section(section, method, arch)
            mode = own.get("mode", AUTO_MODE)
            if mode == AUTO_MODE:
                mode = picked[(arch, method)] = chosen[arch]
            override = resolved.setdefault("overrides", {}).setdefault(arch, {})
            override.setdefault(method, {})["mode"] = mode
            if isinstance(own.get("lr"), dict):
                override[method]["lr"] = _rates_for_mode(own["lr"], mode, method, arch)
    return resolved, picked


def _mode_choices(method: str) -> tuple[str, ...]:
    """The modes the method's ``mode`` setting allows (none where it has no such setting)."""
    found = (
        [f for f in fields(METHODS[method].settings) if f.name == "mode"]
        if method in METHODS
        else []
    )
    return tuple(found[0].metadata.get("choices", ())) if found else ()


def _field_names(method: str) -> set[str]:
    return {f.name for f in fields(METHODS[method].settings)} if method in METHODS else set()


def extended_rate(rates: list[float], side: str) -> float:
    """The rate one step past the ``low`` or ``high`` edge of a grid of two or more ``rates``:
    the grid's own geometric step (``(max / min) ** (1 / (n - 1))``), snapped to the nearest
    value with a leading digit the grid uses (a 1-3-10 grid grows to 1e-5 below 3e-5, not to
    9.5e-6) where one lies within half a step, else rounded to one digit; strictly past the
    edge."""
    grid = sorted(rates)
    step = (grid[-1] / grid[0]) ** (1 / (len(grid) - 1))
    target = grid[0] / step if side == "low" else grid[-1] * step
    digits = {float(f"{r:.0e}"[0]) for r in grid}
    exponent = math.floor(math.log10(target))
    candidates = [
        d * 10.0**e
        for d in digits
        for e in (exponent - 1, exponent, exponent + 1)
        if (d * 10.0**e < grid[0] if side == "low" else d * 10.0**e > grid[-1])
    ]
    best = min(candidates, key=lambda c: abs(math.log(c / target)))
    if abs(math.log(best / target)) > math.log(step) / 2:  # no such value near: one digit
        best = float(f"{target:.0e}")
    return float(f"{best:.6g}")


def grid_extension(rates: list[float], chosen: float) -> float | None:
    """The rate to add when ``chosen`` lies on an edge of ``rates`` (two or more), else None:
    a best rate on the edge may have a better neighbour outside the grid, for every method
    alike (``finetune.grid_extensions`` caps how often a grid grows)."""
    if len(rates) < 2:
        return None
    grid = sorted(rates)
    if chosen == grid[0]:
        return extended_rate(grid, "low")
    if chosen == grid[-1]:
        return extended_rate(grid, "high")
    return None


def searches_rates(section: dict, method: str, arch: str, seed: int, seeds: list[int]) -> bool:
    """Whether this seed's grid for ``method`` on ``arch`` may grow (``grid_extensions`` > 0, a
    grid of two or more rates, and a seed that searches: every seed, or the first one)."""
    labels = rate_labels(section, method, arch, seed, seeds)
    return int(section.get("grid_extensions", 0)) > 0 and len(labels) > 1


def lr_label(rate: float) -> str:
    """A rate as it appears in paths (``lr0.0003``): short and exact. Its inverse is
    :func:`rate_of_label`; labels and rates convert nowhere else."""
    return f"{rate:g}"


#: The path label (``lr{label}``) of a fine-tune that runs at the rate its first seed chose.
CHOSEN_RATE = "chosen"


def rate_of_label(label: str) -> float | None:
    """The rate a path label names (:func:`lr_label`'s inverse); None for :data:`CHOSEN_RATE`,
    a run at the rate its first seed chose, which only its history records."""
    return None if label == CHOSEN_RATE else float(label)


def rate_of(label: str, history) -> float:
    """The learning rate a run ran at: its label's, or (label ``chosen``) the rate its history
    (a DataFrame with an ``lr`` column) started at."""
    rate = rate_of_label(label)
    return float(history["lr"].iloc[0]) if rate is None else rate


def rate_labels(section: dict, method: str, arch: str, seed: int, seeds: list[int]) -> list[str]:
    """The rates one seed's fine-tunes run, as path labels. With ``rate_search: every_seed``
    (the default) every seed tries the whole grid. With ``first_seed`` only the first seed does;
    later seeds run once, at the rate the first seed chose on val (label ``chosen``): a third of
    the compute for a three-rate grid, and the spread across seeds is then the seeds' alone."""
    grid = lr_grid(section, method, arch)
    later_seed = seed != seeds[0]
    if section.get("rate_search", "every_seed") == "first_seed" and later_seed and len(grid) > 1:
        return [CHOSEN_RATE]
    return [lr_label(rate) for rate in grid]


def at_rate(params: dict, method: str, rate: float) -> dict:
    """A fine-tune job's params (:func:`finetune_params`) with its method's ``lr`` set."""
    return {**params, method: {**params[method], "lr": float(rate)}}
