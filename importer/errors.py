"""Errors a user can cause and fix. The CLI turns each into a message and an exit code.

    ImporterError        a problem the user can fix; carries the exit code the CLI uses
     ├── UsageError      bad invocation, configuration or credentials (exit 2)
     └── SourceError     the source cannot be read as a table of tasks (exit 2); names the file,
                         sheet, row and column where they are known

Failures talking to iVvy live in :mod:`importer.client` (``IvvyError`` and below).
"""

from __future__ import annotations

from pathlib import Path


class ImporterError(Exception):
    """A problem the user can fix. ``str()`` is the whole message shown to them."""

    exit_code = 2


class UsageError(ImporterError):
    """Bad invocation, configuration or credentials: nothing was sent."""


class SourceError(ImporterError):
    """The source cannot be read: the message names where, as far as it is known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = str(path)
        self.sheet = sheet
        self.row = row
        self.column = column
        self.reason = message
        where = [self.path]
        if sheet is not None:
            where.append(f"sheet {sheet!r}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}")
