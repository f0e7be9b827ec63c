"""Configs as overlays: every default in one file, every other config only what differs.

``config/protocol.yaml`` holds every key with its default: the protocol the DAM study settled
(methods, rate grids, PESG modes, seeds, rate search, schedule). A fine-tune method's own
settings are the exception: their defaults live in the method's settings class (its module in
``deepauc.methods``), which fills whatever a config leaves out of its section
(:func:`with_method_defaults`), so protocol.yaml states only what the protocol chooses for a
method (its rate grid, PESG's mode) and a new method needs no section at all. Every other
config names the file it stands on with ``extends:`` and states only what it changes:
``config/chexpert.yaml`` (real CheXpert) and ``config/dam_study.yaml`` (the study on synthetic
data) change data and scale, not the fine-tune protocol, so a CheXpert user runs what the study
measured. ``config/config.yaml``, the quick start, shrinks it to fit 10 minutes on 2 cores.

How a command line's configs combine (:func:`resolve`): the Snakefile's ``config/config.yaml``
first, then each ``--configfile`` in order, then ``--config`` keys.

- A file with ``extends: <file>`` (relative to itself) stands on that file's chain, not on the
  configs before it: ``--configfile config/chexpert.yaml`` runs protocol.yaml + chexpert.yaml, and
  the quick start below it is not used. A file it would drop that was given on the command line
  is refused: two configs that each name their base cannot both be used.
- A file without ``extends`` (a user's small overlay) sits on whatever is below it.
- Merging is nested: a mapping updates the mapping below it key by key; a list or a value
  replaces. An empty mapping (``subsets: {}``) clears the mapping below it: without that rule an
  overlay could never drop, say, an ensemble subset of architectures it does not run.

Kept free of snakemake so that tests and bench scripts resolve configs exactly as the workflow
does (:func:`load_config`).
"""

import copy
from dataclasses import fields
from pathlib import Path

import yaml

from deepauc.errors import InputError
from deepauc.methods import METHODS

#: The key with which a config names the file it stands on.
EXTENDS = "extends"


def read_layer(path: str | Path) -> dict:
    """One config file's own keys, ``extends`` included; a clear error for a file that is not
    a YAML mapping."""
    path = Path(path)
    try:
        layer = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError("config file not found", where=str(path)) from None
    except yaml.YAMLError as err:
        raise InputError(
            f"not valid YAML ({err})".replace("\n", " "),
            where=str(path),
            fix="check the indentation and the colons near the line named.",
        ) from None
    if layer is None:
        return {}
    if not isinstance(layer, dict):
        raise InputError(
            f"a config file holds a mapping of keys, found a {type(layer).__name__}",
            where=str(path),
        )
    return layer


def chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """``path`` and the files it stands on, base first, following ``extends``."""
    path = Path(path).resolve()
    if path in _seen:
        loop = " -> ".join(str(p) for p in (*_seen, path))
        raise InputError(f"configs extend each other in a loop: {loop}", where=str(path))
    base = read_layer(path).get(EXTENDS)
    if base is None:
        return [path]
    if not isinstance(base, str) or not base:
        raise InputError(
            f"must name one config file, got {base!r}",
            where=f"{path}: key {EXTENDS}",
            fix="give a path relative to this file, e.g. extends: protocol.yaml",
        )
    parent = path.parent / base
    if not parent.is_file():
        raise InputError(
            f"names {base}, which is not a file ({parent})",
            where=f"{path}: key {EXTENDS}",
            fix="give a path relative to this file, e.g. extends: protocol.yaml",
        )
    return [*chain(parent, (*_seen, path)), path]


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` on ``base`` (a new dict): nested mappings merge key by key, an empty mapping
    clears, anything else replaces; the ``extends`` key is dropped."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if key == EXTENDS:
            continue
        below = merged.get(key)
        if isinstance(value, dict) and value and isinstance(below, dict):
            merged[key] = merge(below, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def layers(base: str | Path, configfiles: list[str | Path] = ()) -> list[Path]:
    """The files a command line's config is made of, in merge order: ``base`` (the Snakefile's
    config) and each ``--configfile`` as described in this module's docstring."""
    stack = chain(base)
    given: list[Path] = []
    for file in configfiles:
        own = chain(file)
        if len(own) > 1:  # it names its base: it stands on that, not on what came before
            dropped = [g for g in given if g not in own]
            if dropped:
                raise InputError(
                    f"extends {own[-2].name}, so the config given before it "
                    f"({', '.join(str(d) for d in dropped)}) would not be used",
                    where=f"--configfile {file}",
                    fix=f"give {Path(file).name} first and the others after it (an overlay "
                    f"without '{EXTENDS}:' sits on the configs before it), or make one config "
                    f"'{EXTENDS}:' the other.",
                )
            stack = own
        else:
            stack = [*stack, own[0]]
        given.append(own[-1])
    return stack


def resolve(
    base: str | Path, configfiles: list[str | Path] = (), overrides: dict | None = None
) -> tuple[dict, list[Path]]:
    """The config of a command line (``base`` the Snakefile's config, then ``--configfile``
    files, then ``--config`` keys as ``overrides``) and the files it was made of."""
    files = layers(base, configfiles)
    config: dict = {}
    for file in files:
        config = merge(config, read_layer(file))
    return with_method_defaults(merge(config, overrides or {})), files


def with_method_defaults(config: dict) -> dict:
    """``config`` with every registered method's section complete: the keys it leaves out hold
    the defaults of the method's settings class, after the keys it gives (so a job's params, and
    with them Snakemake's record of what a model was made with, read the same either way). A
    section that is not a mapping is left for the schema to refuse, naming its key."""
    finetune = config.get("finetune")
    if not isinstance(finetune, dict):
        return config
    for name, method in METHODS.items():
        own = finetune.get(name) or {}
        if isinstance(own, dict):
            missing = {
                f.name: _plain(f.default) for f in fields(method.settings) if f.name not in own
            }
            finetune[name] = {**own, **missing}
    return config


def _plain(value):
    """A default as YAML would give it (a list, not a tuple)."""
    return list(value) if isinstance(value, tuple) else value


def load_config(*paths: str | Path) -> dict:
    """The config that ``paths`` make, the first as the base and the rest as ``--configfile``
    files: e.g. ``load_config("config/chexpert.yaml")`` is what a CheXpert run reads."""
    first, *rest = paths
    return resolve(first, rest)[0]


def key_origin(key: str, files: list[Path], overrides: dict | None = None) -> str:
    """Where a top-level ``key`` of a resolved config was set: ``--config`` or the last of
    ``files`` (as :func:`layers` gives them) that states it, for a message's fix."""
    if key in (overrides or {}):
        return f"--config {key}=..."
    for file in reversed(files):
        if key in read_layer(file):
            return shown_path(file)
    return "no config (its default)"


def shown_path(file: str | Path) -> str:
    """A config file's path as a user would type it: relative to here when below it."""
    try:
        return str(Path(file).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(file)
