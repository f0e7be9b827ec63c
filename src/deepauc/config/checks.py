"""Config checks that need no settings of their own: what the schema cannot say clearly.

Each refuses a config that would otherwise be taken silently, or be refused with a message that
does not say what to do, and names the key and the fix.
"""

import copy
import dataclasses
import difflib
import os
import typing

from deepauc.data.chexpert import LABEL_COLUMNS
from deepauc.errors import InputError
from deepauc.methods import METHODS

__all__ = [
    "RESULTS",
    "check_disease_keys",
    "check_known_keys",
    "check_mappings_given_as_mappings",
    "check_override_names",
    "check_synthetic_stays_in_results",
    "outside_results",
    "strict_schema",
]

#: The one folder (relative to the working directory) the workflow writes to, besides
#: Snakemake's own ``.snakemake/``. A user's data is read-only to us.
RESULTS = "results"


def check_mappings_given_as_mappings(config: dict, schema: dict) -> None:
    """Refuse text where the schema wants a mapping, saying why. ``--config`` parses each value
    as YAML, so ``uncertainty=Edema:ones`` (no space after the colon) or ``uncertainty=Edema=ones``
    arrive as a string, and the schema's own message ("is not of type 'object'") does not say
    what to do."""
    for key, rules in schema.get("properties", {}).items():
        value = config.get(key)
        if rules.get("type") == "object" and isinstance(value, str):
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise InputError(
                f"is a mapping of settings but arrived as the text {shown!r}",
                where=f"config key {key}",
                fix=f"--config reads each value as YAML, so write the mapping in YAML's flow style "
                f"with a space after each colon (--config '{key}={{name: value, other: value}}'), "
                f"or put {key}: in a YAML file passed with --configfile (after the targets).",
            )


def check_disease_keys(mapping: dict, key: str, diseases, extra=("default",)) -> None:
    """Refuse a key of a mapping keyed by disease that is no CheXpert label: a misspelt disease
    would be ignored and that disease fall back to the default, silently. Labels not in
    ``diseases`` are allowed, so one config can serve several disease lists."""
    for name in mapping:
        if name in LABEL_COLUMNS or name in extra:
            continue
        choices = [*diseases, *extra, *LABEL_COLUMNS]
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(
            f"{name!r} is not a CheXpert label, so its setting would be ignored",
            where=f"config key {key}.{name}",
            fix=f"{hint}keys are diseases spelled as their CheXpert column "
            f"({', '.join(diseases)}, ...) or {', '.join(extra)}.",
        )


def check_override_names(section: dict, architectures: list[str], where: str) -> None:
    """Refuse ``<where>.overrides`` for a near miss of a listed architecture.

    Overrides for an architecture not on the list are kept for when it is (one config serves
    several lists, as config/dam_study.yaml run one family at a time); a near miss of a listed
    one is a typo that would silently leave that architecture at the section's settings."""
    for name in section.get("overrides", {}):
        typo = difflib.get_close_matches(name, architectures, n=1, cutoff=0.85)
        if name not in architectures and typo:
            raise InputError(
                f"overrides for {name!r}, which is not in architectures: did you mean {typo[0]!r}?",
                where=f"config key {where}.overrides.{name}",
                fix=f"spell it as in architectures ({', '.join(architectures)}).",
            )


def outside_results(path: str, results: str = RESULTS) -> bool:
    """Whether ``path`` (relative to the working directory, or absolute) lies outside
    ``results``. Symbolic links are followed, so a ``results`` that links to a scratch disk
    still holds what is under it, and a link inside it that leads elsewhere does not."""
    here = os.path.realpath(results)
    there = os.path.realpath(path)
    return there == here or os.path.commonpath([here, there]) != here


def check_synthetic_stays_in_results(config: dict, results: str = RESULTS) -> None:
    """Refuse ``synthetic.enabled: true`` with a dataset folder outside ``results``.

    The synthetic generator writes ``train.csv``, ``valid.csv`` and JPEGs into
    ``data_root/dataset_dir``: pointed at a folder of real data (``--config data_root=...``
    without ``--configfile config/chexpert.yaml``, which turns synthetic data off) it would
    overwrite the user's CSVs and images."""
    dataset = os.path.join(config["data_root"], config["dataset_dir"])
    if not outside_results(dataset, results):
        return
    raise InputError(
        f"synthetic.enabled is true, so the synthetic dataset would be written into "
        f"{os.path.realpath(dataset)}, outside {results}/: data of your own there would be "
        "overwritten. Nothing was written",
        where="config keys synthetic.enabled, data_root",
        fix="to train on your own data, add --configfile config/chexpert.yaml (before "
        "--config; it sets synthetic.enabled: false), or set synthetic.enabled: false in your "
        f"config. For the embedded synthetic dataset, leave data_root at {results}/synthetic "
        f"(or another folder under {results}/).",
    )


def strict_schema(schema: dict) -> dict:
    """``schema`` with every mapping closed: the sections the schema leaves open-ended get the
    keys they may hold. A fine-tune method's section (``finetune.<method>``, also under
    ``finetune.overrides.<arch>``) holds the fields of its registered settings class, and
    ``warmup.overrides.<arch>`` holds warm-up keys. Only the names matter here, for
    :func:`check_known_keys`; the values are checked by the schema and the settings classes."""
    strict = copy.deepcopy(schema)
    finetune = strict["properties"]["finetune"]
    methods = {
        name: {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: {} for f in dataclasses.fields(method.settings)},
        }
        for name, method in METHODS.items()
    }
    for name, section in methods.items():
        finetune["properties"].setdefault(name, section)
    finetune["additionalProperties"] = False
    finetune["properties"]["overrides"]["additionalProperties"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": methods,
    }
    warmup = strict["properties"]["warmup"]
    warmup["properties"]["overrides"]["additionalProperties"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: v for k, v in warmup["properties"].items() if k != "overrides"},
    }
    return strict


def check_known_keys(config: dict, schema: dict) -> None:
    """Refuse the first key, at any depth, that ``schema`` (see :func:`strict_schema`) does not
    know, naming the key, its section and the closest valid name. Run before the schema's own
    validation, whose messages for an unknown key ("Additional properties are not allowed",
    or "2 is not of type 'object'" where a section holds further sections) say neither."""
    _check_section(config, schema, [])


def _check_section(value, schema: dict, path: list[str], parent: dict | None = None) -> None:
    if not isinstance(value, dict):
        return
    known = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in known:
            _check_section(item, known[key], [*path, str(key)], known)
        elif isinstance(extra, dict):
            _check_section(item, extra, [*path, str(key)], known)
        elif extra is False:
            raise _unknown_key(str(key), path, list(known), parent or {})


def _unknown_key(key: str, path: list[str], known: list[str], parent: dict) -> InputError:
    section = ".".join(path)
    place = f"in section {section}" if path else "at the top level of the config"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if key in parent and len(path) > 0:  # put one level too deep
        above = ".".join(path[:-1]) or "the top level"
        hint = f"{key!r} is a setting of {above}, one level up. " + hint
    return InputError(
        f"unknown setting {key!r} {place}",
        where=f"config key {'.'.join([*path, key])}",
        fix=f"{hint}The settings {place} are: {', '.join(known)} (config/README.md explains each).",
    )


#: What a YAML value of a plain-typed setting may be (a whole number is a valid float).
ACCEPTED_TYPES = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}


def check_value(value, hint, limits: typing.Mapping, where: str) -> None:
    """Refuse a value of the wrong type, or outside the field's limits (its ``choices``,
    ``minimum``, ``above``, ``maximum``: ``deepauc.methods.setting``), naming the key."""
    accepted = ACCEPTED_TYPES.get(hint)
    if accepted and (isinstance(value, bool) != (hint is bool) or not isinstance(value, accepted)):
        kind = {float: "a number", int: "a whole number", str: "text", bool: "true or false"}
        fix = f"give {kind[hint]}."
        if hint is float and isinstance(value, str):
            fix += " YAML reads 1e-4 (no point) as text: write 1.0e-4."
        raise InputError(f"{value!r} is not {kind[hint]}", where=where, fix=fix)
    choices = limits.get("choices")
    if choices and value not in choices:
        raise InputError(
            f"{value!r} is not a choice of this setting",
            where=where,
            fix=f"use one of {', '.join(map(str, choices))}.",
        )
    bounds = [
        ("minimum", lambda v, b: v >= b, "at least"),
        ("above", lambda v, b: v > b, "greater than"),
        ("maximum", lambda v, b: v <= b, "at most"),
    ]
    for name, holds, words in bounds:
        if name in limits and not holds(value, limits[name]):
            raise InputError(
                f"{value!r} is out of range",
                where=where,
                fix=f"give a value {words} {limits[name]:g}.",
            )
