"""ivvy-task-importer: every row of a spreadsheet of tasks becomes an iVvy CRM task, exactly once,
with a results sheet that says for each row its task id or exactly why not.

Run an import in five lines::

    import importer

    summary = importer.run("tasks.xlsx", options=importer.RunOptions(results="tasks.results.xlsx"))
    print(summary.describe())
    summary.raise_for_failures()  # for a scheduler: fail the task when rows need a person

The credentials come from the environment (``IVVY_API_KEY``, ``IVVY_API_SECRET``, and
``IVVY_REGION`` or ``IVVY_BASE_URL``) unless ``credentials=importer.Credentials(key, secret)`` is
given. ``importer.validate(...)`` makes every check and sends nothing; ``importer.inspect(...)``
says how the file is read and mapped; ``importer.undo(run_id)`` takes a run back. Each has an
``_async`` twin for code that runs in an event loop. A source is a file's path, an
``importer.Table(headers, rows)``, or a pandas DataFrame; ``summary.rows()`` streams each row's
cells and outcome; ``on_event`` hears a :class:`ProgressEvent` as each row is recorded.

The journal (one SQLite file per target, under the user's data folder unless
``RunOptions(state=...)``) is what makes a second run of the same rows create nothing again, and
``RunOptions(resume=True)`` go on where a stopped run stopped. Every exception the library raises
on purpose is an :class:`Error`.
"""

from __future__ import annotations

from ._api import (
    Inspection,
    Table,
    inspect,
    run,
    run_async,
    undo,
    undo_async,
    validate,
    validate_async,
)
from .client import ApiError, AuthError, Credentials, IvvyClient, IvvyError, TransportError
from .errors import AmbiguousEncoding, Error, ImporterError, RunFailed, SourceError, UsageError
from .map import MappingFile, load_mapping_file
from .model import Outcome, ProgressEvent, RowResult
from .options import DateOptions, JournalOptions, RunOptions, SourceOptions
from .read import ReadLimits, RowCache
from .send import SendOptions
from .summary import RunSummary

__all__ = [
    "AmbiguousEncoding",
    "ApiError",
    "AuthError",
    "Credentials",
    "DateOptions",
    "Error",
    "ImporterError",
    "Inspection",
    "IvvyClient",
    "IvvyError",
    "JournalOptions",
    "MappingFile",
    "Outcome",
    "ProgressEvent",
    "ReadLimits",
    "RowCache",
    "RowResult",
    "RunFailed",
    "RunOptions",
    "RunSummary",
    "SendOptions",
    "SourceError",
    "SourceOptions",
    "Table",
    "TransportError",
    "UsageError",
    "inspect",
    "load_mapping_file",
    "run",
    "run_async",
    "undo",
    "undo_async",
    "validate",
    "validate_async",
]
