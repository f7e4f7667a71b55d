"""The pipeline: read → map → normalise → validate → send → record → write results.

:func:`run_import` is the library's entry point; the CLI only wires options to it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .client import IvvyClient
from .journal import MemoryJournal
from .map import map_columns
from .model import SUCCESSFUL, Outcome, Payload, Row
from .normalise import normalise
from .read import open_source
from .results import default_results_path, write_results_csv
from .send import SendOptions, send_all
from .validate import validate


@dataclass(frozen=True)
class RunOptions:
    """What a run may be told. ``results``: where the results sheet goes (default: beside the
    source); ``concurrency``: rows in flight at once."""

    results: Path | None = None
    concurrency: int = 8


@dataclass
class RunSummary:
    """What a run did, for people (``describe``) and schedulers (``as_dict``, ``exit_code``)."""

    source: Path
    results: Path
    target: str
    counts: Counter[str] = field(default_factory=Counter)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """0 when every row is created, updated or unchanged; 1 when any needs a person."""
        return 0 if set(self.counts) <= SUCCESSFUL else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "results": str(self.results),
            "target": self.target,
            "rows": self.rows,
            "counts": dict(self.counts),
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds, 1) if self.seconds else None,
            "exit_code": self.exit_code,
        }

    def describe(self) -> str:
        parts = ", ".join(f"{n} {result}" for result, n in sorted(self.counts.items()))
        return (
            f"{self.rows} rows in {self.seconds:.1f} s: {parts or 'nothing to do'}. "
            f"Results: {self.results}"
        )


async def run_import(
    source_path: str | Path, client: IvvyClient, options: RunOptions = RunOptions()
) -> RunSummary:
    """Import every row of ``source_path`` through ``client``; the run's summary.

    Raises :class:`~importer.errors.SourceError` before sending anything when the source cannot
    be read or mapped, and :class:`~importer.client.IvvyError` when iVvy cannot be reached or
    refuses the credentials before any row is sent.
    """
    clock = time.monotonic()
    source = open_source(source_path)
    mapping = map_columns(source.headers, path=source.path, sheet=source.sheet)
    results_path = options.results or default_results_path(source.path)
    summary = RunSummary(source=source.path, results=results_path, target=client.credentials.target)
    # The whole source is read before anything is sent, so that a malformed row anywhere stops
    # the run with nothing sent.
    rows: list[Row] = list(source.rows())
    await client.ping()  # credentials and connection, before any row is sent

    journal = MemoryJournal()
    for row in rows:
        journal.pending(row.number)

    def ready() -> Iterator[Payload]:
        for row in rows:
            checked = normalise(row, mapping)
            if isinstance(checked, Payload):
                checked = validate(checked) or checked
            if isinstance(checked, Outcome):
                journal.done(row.number, checked)
                continue
            journal.in_flight(row.number)
            yield checked

    def record(payload: Payload, outcome: Outcome) -> None:
        journal.done(payload.row.number, outcome)

    await send_all(client, ready(), record, SendOptions(concurrency=options.concurrency))
    outcomes = [(row, journal.outcome(row.number)) for row in rows]
    write_results_csv(results_path, source.headers, outcomes)  # type: ignore[arg-type]
    summary.counts = journal.counts()
    summary.seconds = time.monotonic() - clock
    return summary
