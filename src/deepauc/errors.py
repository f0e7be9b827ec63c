"""Errors a user can hit, each naming what was wrong, where, and how to fix it."""


class InputError(ValueError):
    """Bad user input: a file, a row or a config key that cannot be used as given.

    The message says what is wrong, where (file, row, column or key) and how to fix it, so the
    workflow can print it as is instead of a traceback.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        parts = [f"{where}: {what}" if where else what]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__("\n".join(parts))


class JobStopped(Exception):
    """A training job stopped on request (SIGTERM from a scheduler, Ctrl-C) after saving where
    it was. Not an error: the same command continues it. ``exit_status`` is the shell's
    convention for a process ended by ``signum`` (143 for SIGTERM, 130 for SIGINT)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum
