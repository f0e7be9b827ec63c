"""Logging for workflow jobs: all to the job's log file, user errors to the console too."""

import contextlib
import errno
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from deepauc.atomic import NO_SPACE
from deepauc.errors import InputError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def logged_to(log_path: str | Path) -> Iterator[None]:
    """Send stderr (progress bars included) and logging to ``log_path`` for the block.

    An :class:`InputError`, or a full disk or unwritable folder (:func:`storage_error`), is
    written to the log and to the console as its message alone, and the job exits with status 1:
    the user sees what to fix, not a traceback. Any other exception is a bug and keeps its
    traceback in the log.
    """
    console = sys.stderr
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log_file:
        sys.stderr = log_file
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter(FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            try:
                yield
            except OSError as err:
                problem = storage_error(err)
                if problem is None:
                    raise
                raise problem from err
        except InputError as err:
            logging.getLogger("deepauc").error("%s", err)
            print(f"deepauc: error: {err}", file=console)
            raise SystemExit(1) from None
        except BaseException:
            logging.getLogger("deepauc").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)
            sys.stderr = console


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def storage_error(err: OSError) -> InputError | None:
    """A full disk or a folder we may not write to, as a message with its fix; None otherwise.

    Outputs are written to a temporary name and renamed (``deepauc.atomic``), so a failed write
    leaves nothing at the final path; training keeps its last ``.pt.resume``.
    """
    where = err.filename or "an output file"
    if err.errno in NO_SPACE:
        return InputError(
            f"no space left to write {where} ({err.strerror})",
            where=str(where),
            fix="free space on that disk (or quota), then run the same command again: finished "
            "outputs are kept and training resumes after its last saved epoch.",
        )
    if err.errno in NOT_WRITABLE:
        return InputError(
            f"cannot write {where} ({err.strerror})",
            where=str(where),
            fix="make the results folder writable for you, or run Snakemake from a folder you "
            "can write to (--directory); finished outputs are kept.",
        )
    return None
