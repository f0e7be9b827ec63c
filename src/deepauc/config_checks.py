"""Config checks that need no settings of their own: what the schema cannot say clearly.

Each refuses a config that would otherwise be taken silently, or be refused with a message that
does not say what to do, and names the key and the fix.
"""

import difflib

from deepauc.chexpert import LABEL_COLUMNS
from deepauc.errors import InputError

__all__ = ["check_disease_keys", "check_mappings_given_as_mappings", "check_override_names"]


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
