"""The library's exceptions, under one base. The CLI turns each into a message and an exit code.

Error                    anything the library raises on purpose
 ├── ImporterError       a problem the user can fix; carries the exit code the CLI uses
 │    ├── UsageError     bad invocation, configuration or credentials (exit 2)
 │    ├── SourceError    the source cannot be read as a table of tasks (exit 2); names the
 │    │                  file, sheet, row and column where they are known
 │    │    └── EmptySource  a header and no rows
 │    ├── BrokenExport   a keyed run's source holds no rows: nothing sent or cancelled (exit 1)
 │    └── JournalLost    the journal stopped answering mid-run (exit 1): the run stopped,
 │                       its rows sent and not yet recorded are settled by the next run
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


class AmbiguousEncoding(SourceError):
    """A text file that is not UTF-8 reads cleanly in more than one encoding, differently: the
    person chooses (``--encoding``; on the page, from the readings). ``readings``: each
    candidate encoding, the language its reading shows (or None), and a line read so."""

    def __init__(
        self, message: str, *, path: str | Path, readings: list[tuple[str, str | None, str]]
    ) -> None:
        super().__init__(message, path=path)
        self.readings = readings


class EmptySource(SourceError):
    """A table with its header and no data rows."""


class BrokenExport(ImporterError):
    """A keyed (nightly) run's source holds no rows: taken as a broken export, not as every
    key gone. Nothing is sent or cancelled; exit 1, as for a shrunken export."""

    exit_code = 1


class JournalLost(ImporterError):
    """The journal could not be written or read mid-run (its database went away, its disk is
    full): the run stopped at once. Every row sent was written in flight first, so the next
    run looks those up before sending anything: nothing is sent twice."""

    exit_code = 1

    def __init__(self, where: str, why: str) -> None:
        self.where = where
        super().__init__(
            f"the journal {where} stopped answering ({why}): the run stopped. Nothing is lost: "
            "the rows sent and not yet recorded are in flight in the journal, and the next run "
            "looks each up in iVvy before sending anything. When the journal is back, run the "
            "same command again with --resume; the results sheet was not written"
        )


class RunFailed(Error):
    """A run (or check, or undo) ended with rows that need a person, or did not end: raised by
    :meth:`RunSummary.raise_for_failures`, for a scheduler to fail its task. ``summary`` is the
    run's summary; ``str()`` says what needs attention."""

    def __init__(self, summary: object, message: str) -> None:
        super().__init__(message)
        self.summary = summary
