"""A results folder belongs to one experiment.

Snakemake reruns whatever a changed config touches, so a command run in the wrong folder, or
without the configs the folder was made with, would retrain over a finished run (the quick
start's defaults planned over a CheXpert run's models, say). The first run in a folder records
what it is an experiment of in ``results/experiment.yaml`` (:data:`RECORD`): the resolved
config's data and protocol keys and a fingerprint of the dataset's CSVs. Every later command is
compared with it while the workflow parses (:func:`claim_results`), and one whose data or
protocol differs is refused with what differs and the fix, before anything runs. The record is
written when the command starts its jobs (:class:`Claim`): a dry run, a report or a command
refused while its jobs are planned writes nothing.

Not compared: the runtime keys (they never change what is computed), ``figures`` and
``inference`` (they draw or score more, and retrain nothing) and ``accept_changes`` itself.
A changed ``data_root`` whose CSVs are byte-identical is the same data moved. A change made on
purpose is accepted with ``accept_changes: true`` for one command, and written into the record's
``changes`` list. A folder whose ``results/`` holds nothing but the record and logs has nothing
to lose: a new config there replaces the record.
"""

import copy
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from deepauc.atomic import atomic_path
from deepauc.config.checks import RESULTS
from deepauc.config.settings import RUNTIME_KEYS
from deepauc.errors import InputError

#: The record of a results folder's experiment, relative to the working directory.
RECORD = f"{RESULTS}/experiment.yaml"
#: The config key that accepts a change of the experiment for one command.
ACCEPT = "accept_changes"
#: Keys of the dataset and how it is read and split: a change means other data.
DATA_KEYS = (
    "data_root",
    "dataset_dir",
    "train_csv",
    "test_csv",
    "check_images",
    "on_bad_image",
    "synthetic",
    "diseases",
    "uncertainty",
    "views",
    "split",
)
#: Keys that never change what a results folder holds, as dotted paths.
NOT_COMPARED = (*RUNTIME_KEYS, "evaluation.batch_size", "figures", "inference", ACCEPT)
#: Differences listed in a refusal, at most.
LISTED = 12


def experiment_of(config: dict, csvs: dict[str, str] | None = None) -> dict:
    """What a results folder made with ``config`` is an experiment of: its data keys, its
    protocol keys (every other key that shapes results) and, for real data, the SHA-256 of each
    CSV in ``csvs`` (config key -> path)."""
    kept = copy.deepcopy(config)
    for dotted in NOT_COMPARED:
        *parents, last = dotted.split(".")
        section = kept
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(last, None)
    data = {key: kept.pop(key) for key in DATA_KEYS if key in kept}
    record = {"data": data, "protocol": kept}
    if csvs:
        record["csv_sha256"] = {key: file_digest(path) for key, path in csvs.items()}
    return record


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of the file's SHA-256: enough to tell two CSVs apart."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def differences(recorded: dict, current: dict) -> list[str]:
    """``key: recorded -> now`` for every leaf that differs (dotted keys, sorted). A moved
    ``data_root`` whose CSVs have the same digests is not a difference."""
    old, new = _leaves(recorded), _leaves(current)
    same_csvs = recorded.get("csv_sha256") and recorded.get("csv_sha256") == current.get(
        "csv_sha256"
    )
    found = []
    for key in sorted(set(old) | set(new)):
        if same_csvs and key == "data.data_root":
            continue
        if old.get(key, _ABSENT) != new.get(key, _ABSENT):
            shown = key.split(".", 1)[1] if key.startswith(("data.", "protocol.")) else key
            found.append(
                f"{shown}: {_show(old.get(key, _ABSENT))} -> {_show(new.get(key, _ABSENT))}"
            )
    return found


class _Absent:
    def __repr__(self) -> str:
        return "(not set)"


_ABSENT = _Absent()


def _leaves(tree, prefix: str = "") -> dict:
    """Dotted key -> value of every non-mapping value (an empty mapping is a value)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _show(value) -> str:
    text = (
        repr(value)
        if not isinstance(value, (list, dict))
        else yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    )
    return text if len(text) <= 80 else text[:77] + "..."


def holds_outputs(results: Path) -> bool:
    """Whether ``results`` holds anything a run made besides the record and logs."""
    if not results.is_dir():
        return False
    ignored = {Path(RECORD).name, "logs"}
    return any(entry.name not in ignored for entry in results.iterdir())


@dataclass(frozen=True)
class Claim:
    """What a command will write into the record once it runs jobs: ``write()`` it then (a dry
    run, a report or a refused plan writes nothing), and tell the user ``note``."""

    path: Path
    record: dict
    note: str

    def write(self) -> None:
        _write(self.path, self.record)


def claim_results(
    experiment: dict, made_with: list[str], *, accept: bool = False, folder: str | Path = "."
) -> Claim | None:
    """Compare ``experiment`` with the record of ``folder/results`` and refuse a command whose
    experiment differs from a folder that holds outputs, unless ``accept``. ``made_with`` names
    the config files and ``--config`` keys, for the record and the message. Returns the record
    to write (there is none yet, or a change is accepted, or results/ hold nothing to lose), or
    None where the record stands as it is."""
    path = Path(folder, RECORD)
    now = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "configs": list(made_with),
    }
    if not path.is_file():
        return Claim(
            path,
            {**now, "experiment": experiment, "changes": []},
            f"{RECORD}: this folder's experiment recorded ({' < '.join(made_with)})",
        )
    try:
        record = yaml.safe_load(path.read_text())
        recorded = record["experiment"]
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise InputError(
            f"cannot be read as an experiment record ({type(err).__name__})",
            where=str(path),
            fix="restore it from a backup, or delete it to record this command's config as the "
            "folder's experiment (nothing else is deleted).",
        ) from None
    changed = differences(recorded, experiment)
    if not changed:
        return None
    if accept or not holds_outputs(path.parent):
        changes = [*record.get("changes", []), {**now, "changed": changed}]
        why = "accepted" if accept else "results/ held no outputs yet"
        return Claim(
            path,
            {**record, "experiment": experiment, "changes": changes},
            f"{RECORD}: the experiment changed ({why}): " + "; ".join(changed),
        )
    listed = changed[:LISTED]
    if len(changed) > LISTED:
        listed.append(f"... and {len(changed) - LISTED} more")
    raise InputError(
        f"this folder's results/ belong to the experiment recorded in {RECORD} (made with "
        f"{' < '.join(record.get('configs', []))}), and this command's config (made with "
        f"{' < '.join(made_with)}) differs from it in {len(changed)} key(s):\n  "
        + "\n  ".join(listed)
        + "\nRunning it would retrain over, or replace, the results this folder holds.",
        fix="to add to this experiment (figures, report, export, new image sets), run the "
        "command with the configs it was made with (in a folder of your own, its "
        "config/config.yaml alone: no --configfile); to run this config without touching "
        "these results, give it a folder of its own (`deepauc init <folder>`, or "
        f"`--directory <folder>`); to change this experiment on purpose, add "
        f"`--config {ACCEPT}=True` after the targets (the change is written into {RECORD}).",
    )


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# What this results folder is an experiment of (deepauc.config.experiment): written by\n"
        "# its first run, compared with every later command. Do not edit; see `changes` for\n"
        "# changes accepted with --config accept_changes=True.\n"
    )
    with atomic_path(path) as tmp:
        Path(tmp).write_text(header + yaml.safe_dump(record, sort_keys=False, width=100))
