"""Logging for workflow jobs: all to the job's log file, user errors to the console too."""

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from deepauc.errors import InputError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def logged_to(log_path: str | Path) -> Iterator[None]:
    """Send stderr (progress bars included) and logging to ``log_path`` for the block.

    An :class:`InputError` is written to the log and to the console as its message alone, and the
    job exits with status 1: the user sees what to fix, not a traceback. Any other exception is a
    bug and keeps its traceback in the log.
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
            yield
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
