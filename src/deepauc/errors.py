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
