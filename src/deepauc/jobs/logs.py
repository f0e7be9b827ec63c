"""Logging for workflow jobs: all to the job's log file, user errors to the console too."""

import contextlib
import errno
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from deepauc.atomic import NO_SPACE
from deepauc.errors import InputError, JobStopped

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: A log record made with ``extra=TO_CONSOLE`` also reaches the console (Snakemake's output),
#: not only the job's log: a warning the user should see while the run goes on.
TO_CONSOLE = {"console": True}


@contextlib.contextmanager
def logged_to(log_path: str | Path, journal: str | Path | None = None) -> Iterator[None]:
    """Send stderr (progress bars included) and logging to ``log_path`` for the block.

    An :class:`InputError`, or a full disk or unwritable folder (:func:`storage_error`), is
    written to the log and to the console as its message alone, and the job exits with status 1:
    the user sees what to fix, not a traceback. A :class:`JobStopped` (a training job stopped by
    a signal after saving its state) is a warning, and the job exits with the signal's status.
    Any other exception is a bug and keeps its traceback in the log. A record logged with
    ``extra=TO_CONSOLE`` goes to the console too.

    With a ``journal`` (a file beside a training job's resume file), the log survives the job
    being stopped or killed: Snakemake deletes a job's log before it runs it again, so the log is
    written through the journal (the same file, under a second name) and a rerun carries on
    below what the earlier runs logged. A job that ends without an exception removes its
    journal.
    """
    console = sys.stderr
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with _open_log(Path(log_path), journal) as log_file:
        sys.stderr = log_file
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter(FORMAT))
        loud = logging.StreamHandler(console)
        loud.setFormatter(logging.Formatter("deepauc: %(levelname)s: %(message)s"))
        loud.addFilter(lambda record: getattr(record, "console", False))
        root = logging.getLogger()
        root.addHandler(handler)
        root.addHandler(loud)
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
        except JobStopped as stop:
            logging.getLogger("deepauc").warning("%s", stop)
            print(f"deepauc: {stop}", file=console)
            raise SystemExit(stop.exit_status) from None
        except BaseException:
            logging.getLogger("deepauc").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)
            root.removeHandler(loud)
            sys.stderr = console
    if journal is not None:
        Path(journal).unlink(missing_ok=True)


@contextlib.contextmanager
def _open_log(log_path: Path, journal: str | Path | None) -> Iterator:
    """The open log file: ``log_path`` afresh, or a journal continued and linked as the log."""
    if journal is None:
        with open(log_path, "w", buffering=1) as log_file:
            yield log_file
        return
    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    again = journal.exists() and journal.stat().st_size > 0
    with open(journal, "a", buffering=1) as log_file:
        if again:
            log_file.write(
                f"---- {time.strftime('%Y-%m-%d %H:%M:%S')}: this job starts again "
                "(its earlier runs are above) ----\n"
            )
        log_path.unlink(missing_ok=True)
        try:
            os.link(journal, log_path)
        except OSError:  # another file system: the log gets what is there now, then its own
            shutil.copyfile(journal, log_path)
            with open(log_path, "a", buffering=1) as own:
                yield own
            return
        yield log_file


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
