"""The pipeline: read → map → normalise → validate → send → record → write results.

:func:`prepare` reads and maps a source and makes one pass over it (every row readable, the date
order of the due column, the row count) before anything is sent; :func:`checked_rows` streams
each row normalised and validated; :func:`run_import` is the whole job. The CLI only wires
options to these.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from .client import IvvyClient
from .dates import DateEvidence, DateOrder, DateRules, zone_named
from .errors import UsageError
from .journal import MemoryJournal
from .map import ColumnMapping, load_mapping_file, map_columns
from .model import SUCCESSFUL, Outcome, Payload, Row
from .normalise import Normaliser
from .read import Source, open_source
from .results import default_results_path, write_results_csv
from .send import SendOptions, send_all
from .validate import validate

VENUE_ZONE = "venue"


@dataclass(frozen=True)
class RunOptions:
    """What a run may be told (each ``None`` means: the mapping file's option, else the
    profile's, else the default).

    ``timezone``: IANA zone of the sheet's times, or ``"venue"`` for the zone of ``venue_id``;
    ``date_order``: ``dmy`` or ``mdy`` for dates like 03/04/2026; ``default_time``: time of day
    given to dates without one (09:00).
    """

    results: Path | None = None
    concurrency: int = 8
    sheet: str | None = None
    encoding: str | None = None
    profile: str | None = None
    mapping: Path | None = None
    timezone: str | None = None
    venue_id: int | None = None
    date_order: DateOrder | None = None
    default_time: clock_time | None = None


@dataclass
class Prepared:
    """A source read and mapped, with what one pass over it showed."""

    source: Source
    mapping: ColumnMapping
    rules: DateRules
    rows: int
    warnings: list[str]

    def normaliser(self) -> Normaliser:
        return Normaliser(
            self.mapping,
            self.rules,
            self.source.headers,
            text_only=self.source.kind == "text",
        )


def _option(options: RunOptions, mapping: ColumnMapping, name: str) -> Any:
    given = getattr(options, name)
    return given if given is not None else mapping.options.get(name)


def prepare(
    source_path: str | Path, options: RunOptions = RunOptions(), *, venue_zone: str | None = None
) -> Prepared:
    """Open and map the source, then pass over every row once.

    Raises :class:`~importer.errors.SourceError` when any row cannot be read and
    :class:`~importer.errors.UsageError` for a bad option or mapping file: either way before
    anything is sent. ``venue_zone`` is the zone of ``--venue-id``, looked up by the caller when
    ``--timezone venue`` is asked for.
    """
    mapping_file = load_mapping_file(options.mapping) if options.mapping else None
    sheet = options.sheet or (mapping_file.options.get("sheet") if mapping_file else None)
    source = open_source(source_path, sheet=sheet, encoding=options.encoding)
    mapping = map_columns(
        source.headers,
        path=source.path,
        sheet=source.sheet,
        profile=options.profile,
        mapping_file=mapping_file,
    )
    rules = date_rules(options, mapping, source, venue_zone)
    warnings = [*source.notes, *mapping.warnings]

    due_column = mapping.columns.get("endDatetime")
    count, seen = source.scan(due_column, DateEvidence)
    evidence = seen or DateEvidence()
    if rules.order is None:
        rules = dataclasses.replace(rules, order=evidence.order())
        if conflict := evidence.conflict():
            warnings.append(f"column {due_column!r}: {conflict}")
    if mapping.suggested_key:
        warnings.append(
            f"column {mapping.suggested_key!r} identifies rows in this export: give "
            f"--key {mapping.suggested_key!r} to update them on later runs"
        )
    return Prepared(source=source, mapping=mapping, rules=rules, rows=count, warnings=warnings)


def date_rules(
    options: RunOptions, mapping: ColumnMapping, source: Source, venue_zone: str | None
) -> DateRules:
    """How to read the sheet's dates, from the options, the mapping file and the profile."""
    zone_name = _option(options, mapping, "timezone") or mapping.timezone or "UTC"
    if str(zone_name).lower() == VENUE_ZONE:
        if venue_zone is None:
            raise UsageError("--timezone venue needs --venue-id and a connection to iVvy")
        zone_name = venue_zone
    try:
        zone = zone_named(str(zone_name))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    order = _option(options, mapping, "date_order")
    if order is not None and order not in ("dmy", "mdy"):
        raise UsageError(f"date order must be dmy or mdy, not {order!r}")
    default_time = _option(options, mapping, "default_time") or clock_time(9, 0)
    if isinstance(default_time, str):
        default_time = parse_clock(default_time)
    return DateRules(
        zone=zone,
        order=order,
        default_time=default_time,
        date1904=source.date1904,
        epoch_ms=mapping.epoch_ms,
    )


def parse_clock(text: str) -> clock_time:
    """``HH:MM`` as a time of day; UsageError otherwise."""
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise UsageError(f"a time of day is written HH:MM (24-hour), not {text!r}") from None


def checked_rows(prepared: Prepared) -> Iterator[tuple[Row, Payload | Outcome]]:
    """Every row with its payload, or with the ``invalid`` outcome that stops it."""
    normaliser = prepared.normaliser()
    for batch in prepared.source.batches():
        for row, checked in normaliser.batch(batch).items():
            if isinstance(checked, Payload):
                refused = validate(checked)
                if refused is not None:
                    checked = dataclasses.replace(refused, warnings=checked.warnings)
            yield row, checked


@dataclass
class RunSummary:
    """What a run did, for people (``describe``) and schedulers (``as_dict``, ``exit_code``)."""

    source: Path
    results: Path
    target: str
    counts: Counter[str] = field(default_factory=Counter)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

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
            "warnings": self.warnings,
            "exit_code": self.exit_code,
        }

    def describe(self) -> str:
        parts = ", ".join(f"{n} {result}" for result, n in sorted(self.counts.items()))
        return (
            f"{self.rows} rows in {self.seconds:.1f} s: {parts or 'nothing to do'}. "
            f"Results: {self.results}"
        )


async def venue_timezone(client: IvvyClient, venue_id: int) -> str:
    """The IANA zone of venue ``venue_id`` (from getVenueList, matched locally)."""
    async for venue in client.iter_collection("venue", "getVenueList"):
        if str(venue.get("id")) == str(venue_id):
            zone = venue.get("timezone")
            if not zone:
                raise UsageError(f"venue {venue_id} has no time zone in iVvy: give --timezone")
            return str(zone)
    raise UsageError(f"venue {venue_id} does not exist in iVvy: check --venue-id")


async def run_import(
    source_path: str | Path, client: IvvyClient, options: RunOptions = RunOptions()
) -> RunSummary:
    """Import every row of ``source_path`` through ``client``; the run's summary.

    Raises :class:`~importer.errors.ImporterError` before sending anything when the source,
    the mapping or an option is unusable, and :class:`~importer.client.IvvyError` when iVvy
    cannot be reached or refuses the credentials before any row is sent.
    """
    clock = time.monotonic()
    wants_venue_zone = str(options.timezone or "").lower() == VENUE_ZONE
    if wants_venue_zone and options.venue_id is None:
        raise UsageError("--timezone venue needs --venue-id")
    prepared = prepare(source_path, options) if not wants_venue_zone else None
    await client.ping()  # credentials and connection, before any row is sent
    if prepared is None:
        zone = await venue_timezone(client, options.venue_id)  # type: ignore[arg-type]
        prepared = prepare(source_path, options, venue_zone=zone)
    source = prepared.source
    results_path = options.results or default_results_path(source.path)
    summary = RunSummary(
        source=source.path,
        results=results_path,
        target=client.credentials.target,
        warnings=list(prepared.warnings),
    )
    journal = MemoryJournal()

    def ready() -> Iterator[Payload]:
        for row, checked in checked_rows(prepared):
            journal.pending(row.number)
            if isinstance(checked, Outcome):
                journal.done(row.number, checked)
                continue
            journal.in_flight(row.number)
            yield checked

    def record(payload: Payload, outcome: Outcome) -> None:
        warnings = payload.warnings + outcome.warnings
        journal.done(payload.row.number, dataclasses.replace(outcome, warnings=warnings))

    await send_all(client, ready(), record, SendOptions(concurrency=options.concurrency))
    outcomes = ((row, journal.outcome(row.number)) for row in source.rows())
    write_results_csv(results_path, source.headers, outcomes)  # type: ignore[arg-type]
    summary.counts = journal.counts()
    summary.seconds = time.monotonic() - clock
    return summary
