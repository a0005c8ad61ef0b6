"""The one exception type users see: it names the file (and line) and says what to do."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad user input. The CLI prints it without a traceback and exits with status 2."""

    def __init__(self, path: str | os.PathLike | None, message: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")
