"""Finding the download: where the CSVs were looked for, and where they are when not there.

``data_root`` is the folder that *holds* the dataset folder (``CheXpert-v1.0-small/``), and the
two easiest slips are pointing it at the dataset folder itself or at the folder above the one
meant. :func:`check_dataset_files` refuses a missing CSV with what was looked for, what the
folder holds, and, when the CSV is one level up or down, the setting that finds it.
"""

from pathlib import Path

from deepauc.errors import InputError

#: Entries of a folder listed in a message, at most.
LISTED = 8


def check_dataset_files(
    data_root: str | Path, dataset_dir: str, files: dict[str, str], source: str = "the config"
) -> None:
    """Refuse a missing dataset file. ``files`` maps config keys (``train_csv``) to file names;
    ``source`` says where ``data_root`` was set (a config file, or ``--config``)."""
    for key, name in files.items():
        path = Path(data_root, dataset_dir, name)  # an absolute name stands for itself
        if path.is_file():
            continue
        looked = (
            f"{path} not found (data_root {str(data_root)!r}, dataset_dir {dataset_dir!r}, "
            f"{key} {name!r}; data_root is set in {source})"
        )
        found = [] if Path(name).is_absolute() else nearby(Path(data_root), dataset_dir, name)
        if found:
            root, folder = found[0]
            fix = (
                f"{Path(folder, name)} is in {root}: {_setting(source, root, folder, dataset_dir)}."
            )
        elif Path(name).is_absolute():
            fix = f"give {key} as a file that exists (an absolute path stands for itself)."
        else:
            holder = f"the folder that holds {dataset_dir}/ (where CheXpert's download unpacks)"
            if source.startswith("--config"):
                fix = f"give --config data_root=<{holder}>."
            elif source.startswith("--"):
                fix = f"give {source.split()[0]} <{holder}>."
            else:
                fix = f"set data_root in {source} to {holder}."
        raise InputError(f"{looked}. {describe(Path(data_root))}.", fix=fix)


def _setting(source: str, root: Path, folder: str, dataset_dir: str) -> str:
    """How to give ``root`` (and ``folder``) where ``data_root`` came from ``source``."""
    other = f"dataset_dir: {folder}" if folder != dataset_dir else ""
    if source.startswith("--config"):
        given = f"give --config data_root={root}"
    elif source.startswith("--"):  # a command's option, e.g. deepauc init's --data-root
        given = f"give {source.split()[0]} {root}"
    else:
        return f"set data_root: {root}" + (f" and {other}" if other else "") + f" in {source}"
    return given + (f" and set {other} in the config" if other else "")


def nearby(root: Path, dataset_dir: str, name: str) -> list[tuple[Path, str]]:
    """(data_root, dataset_dir) settings one level up or down from ``root`` under which
    ``name`` exists, the likeliest first: ``root`` is the dataset folder itself, the dataset
    folder is one level deeper, or ``root`` is one level too deep."""
    root = root.absolute()
    found: list[tuple[Path, str]] = []
    if (root / name).is_file():  # data_root names the dataset folder itself
        found.append((root.parent, root.name))
    for child in _folders(root):
        if (child / dataset_dir / name).is_file():
            found.append((child, dataset_dir))
        elif (child / name).is_file():  # another release's folder name
            found.append((root, child.name))
    parent = root.parent
    if parent != root and (parent / dataset_dir / name).is_file():
        found.append((parent, dataset_dir))
    return found


def describe(folder: Path) -> str:
    """What ``folder`` holds (or, where it does not exist, its nearest existing parent)."""
    if folder.is_dir():
        return f"{folder} holds {_listing(folder)}"
    missing = folder
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    parent = missing.parent
    return f"{folder} does not exist ({parent} holds {_listing(parent)})"


def _listing(folder: Path) -> str:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        return f"nothing that can be read ({err.strerror})"
    if not entries:
        return "nothing"
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:LISTED]]
    more = f" and {len(entries) - LISTED} more" if len(entries) > LISTED else ""
    return ", ".join(names) + more


def _folders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
