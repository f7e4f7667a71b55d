"""Record: the run journal, a SQLite file (or a PostgreSQL database) that holds every row's
state as it changes.

One journal per target by default (under the user's data directory; ``--state PATH`` chooses
another file, ``--state postgresql://…`` a database, which many targets may share), holding:

- ``runs``: one line per run (an import or an undo), keyed by the target (base URL and API key,
  never the secret) and the source's fingerprint (its bytes and sheet);
- ``rows``: each row a run has reached. A row absent is pending; ``in_flight`` is written and
  committed *before* the row is sent (with what is sent, so a later run can look it up) and
  ``done`` with its outcome after, so a run killed at any instant leaves every sent row either
  done or in flight, and rows in flight are reconciled, never blindly sent again;
- ``batches``: in batch mode, the ``asyncId`` iVvy gave each row's batch, written as soon as it
  is known, so a run killed while a batch runs has the next run ask the batch API what it did;
- ``keys``: for ``--key``, the task each legacy id became in a target, with a digest of what was
  sent, so a nightly re-run updates or leaves alone instead of creating again;
- ``lineage``: for rows without a key, the task each row of a source became in a target, by the
  source's *origin* (the fingerprint of the file first imported: a results sheet of ours read
  back carries its run's reference, so its rows are the rows of that file) and the row's number
  there. Every path (``--resume``, a results sheet with or without ``--only``, ``--new-run``, the
  page) asks it before creating a row: a row that has a task is updated or unchanged, never
  created again.

The tasks the journal knows in a target (``lineage``, ``keys``, and every row's outcome) are the
tasks this tool made or was told to update: any other id in a source is of unknown origin, and a
run refuses to update it unless told so (``--update-existing``).

Outcomes are written in groups (a few hundred, or every quarter second) to keep the journal's cost
small; a kill loses at most those, and their rows are then still ``in_flight``: reconciled.
The file is in WAL mode, and a lock file beside it keeps two runs from using it at once.
"""

from __future__ import annotations

from pathlib import Path

from ._known import Known
from ._pg import is_postgres, shown
from ._run import RunJournal
from ._schema import (
    FLUSH_ROWS,
    FLUSH_SECONDS,
    Cancelled,
    InFlight,
    RunRecord,
    Touched,
    default_journal_path,
    digest_of,
    fingerprint,
    is_done,
    read_only_journal,
)
from ._store import Journal, list_runs


def state_of(value: object) -> Path | str | None:
    """A ``--state`` value as the journal takes it: a PostgreSQL database's URL stays text,
    any other text is a file's path."""
    if value is None or isinstance(value, Path) or is_postgres(value):
        return value  # type: ignore[return-value]
    return Path(value)  # type: ignore[arg-type]


def shown_state(state: Path | str) -> str:
    """A journal as a message names it (a database's URL without its password)."""
    return shown(str(state)) if is_postgres(state) else str(state)


def open_journal(state: Path | str | None, target: str) -> Journal:
    """The journal a run into ``target`` uses: ``state`` (a file, whose folder must exist, or
    a PostgreSQL database), else the target's own file under the user's data folder."""
    if state is None:
        return Journal(default_journal_path(target), target=target)
    return Journal(state, make_folder=False, target=target)


__all__ = [
    "FLUSH_ROWS",
    "FLUSH_SECONDS",
    "Cancelled",
    "InFlight",
    "Journal",
    "Known",
    "RunJournal",
    "RunRecord",
    "Touched",
    "default_journal_path",
    "digest_of",
    "fingerprint",
    "is_done",
    "is_postgres",
    "list_runs",
    "open_journal",
    "read_only_journal",
    "shown_state",
    "state_of",
]
