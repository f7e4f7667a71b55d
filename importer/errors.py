"""The library's exceptions, under one base. The CLI turns each into a message and an exit code.

Error                    anything the library raises on purpose
 ├── ImporterError       a problem the user can fix; carries the exit code the CLI uses
 │    ├── UsageError     bad invocation, configuration or credentials (exit 2)
 │    └── SourceError    the source cannot be read as a table of tasks (exit 2); names the
 │                       file, sheet, row and column where they are known
 ├── IvvyError           anything between us and iVvy (:mod:`importer.client`)
 └── RunFailed           ``RunSummary.raise_for_failures()``: rows need a person

"""

from __future__ import annotations

from pathlib import Path


class Error(Exception):
    """The base of every exception the library raises on purpose."""


class ImporterError(Error):
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


class RunFailed(Error):
    """A run (or check, or undo) ended with rows that need a person, or did not end: raised by
    :meth:`RunSummary.raise_for_failures`, for a scheduler to fail its task. ``summary`` is the
    run's summary; ``str()`` says what needs attention."""

    def __init__(self, summary: object, message: str) -> None:
        super().__init__(message)
        self.summary = summary
