"""Atomic output: a file appears complete or not at all, never half-written.

Every writer goes through :func:`atomic_path`, which hands out a temporary name in the target's
directory (same filesystem, so the final ``os.replace`` is atomic) and renames it only when the
block finished without an exception. Around that:

- a temporary file left by a writer that was killed (kill -9, a node lost) is removed the next
  time the same output is written, so none outlives the next run of its rule;
- the output gets the permissions the umask gives a new file (0644 under umask 022), not
  ``mkstemp``'s 0600, so colleagues on a shared cluster can read results;
- a full disk (or quota) is reported as one :class:`~deepauc.errors.InputError` naming the file,
  the folder and the space free there, with the temporary file removed.
"""

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from deepauc.errors import InputError

#: errno values of a write that found no space: the device is full, or the user's quota is.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Example::

        with atomic_path("results/data/train.csv") as tmp:
            frame.to_csv(tmp, index=False)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    # Keep the suffix so writers that infer the format from it (savefig, PIL) still work.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as err:
        if err.errno in NO_SPACE:
            raise no_space_error(target) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporary files an earlier, killed writer of ``target`` left (named as
    :func:`atomic_path` names them: ``.{name}.XXXXXXXX.tmp{suffix}``). Snakemake runs one job
    per output at a time, so no live writer owns them."""
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}\.tmp{re.escape(target.suffix)}"
    )
    stale = [p for p in target.parent.glob(f".{target.name}.*") if pattern.fullmatch(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def no_space_error(target: Path, needed: int | None = None) -> InputError:
    """The one message for a write that found no space: which file, where, what is free."""
    free = shutil.disk_usage(target.parent).free
    wanted = f"{needed:,} bytes needed, " if needed is not None else ""
    return InputError(
        f"no space left for this file ({wanted}{free:,} bytes free in {target.parent}); "
        "nothing partial was kept",
        where=str(target),
        fix="free space on that disk (or raise the quota), or run in a results folder on a "
        "larger disk (snakemake --directory), then run the same command again: finished outputs "
        "are kept.",
    )


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse, with one message, a results folder this user cannot write (read-only mount,
    another user's folder), before any job starts and fails in it."""
    folder = Path(folder).resolve()
    try:
        if folder.exists():
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check."):
                pass
        else:  # asked, not tried: nothing outside the results folder is ever written
            existing = next(p for p in folder.parents if p.exists())
            if os.statvfs(existing).f_flag & os.ST_RDONLY:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(existing))
            if not os.access(existing, os.W_OK):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(existing))
    except OSError as err:
        raise InputError(
            f"cannot write the results here ({err.strerror or err})",
            where=str(folder),
            fix="make the folder writable for you (chmod/chown, or remount it read-write), or "
            "run in a folder you can write: snakemake --directory <folder> (the config's "
            "relative paths then start there).",
        ) from err


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it back at once
    os.umask(mask)
    return mask


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` to ``path`` as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy ``source`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)
