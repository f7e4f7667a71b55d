"""The pipeline: read → map → normalise → validate → send → record → write results.

:func:`prepare` reads and maps a source and makes one pass over it (every row readable, the date
order of the due column, the row count) before anything is sent; :func:`checked_rows` streams
each row normalised and validated; :func:`run_import` is the whole job. The CLI only wires
options to these.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from .client import IvvyClient
from .dates import DateEvidence, DateOrder, DateRules, zone_named
from .directory import Directory, Needed
from .errors import UsageError
from .journal import MemoryJournal
from .map import ColumnMapping, load_mapping_file, map_columns
from .model import SUCCESSFUL, Outcome, Payload, Row
from .normalise import CellError, Normaliser, to_id_or_email, to_integer
from .read import Batch, Source, is_blank, open_source
from .results import default_results_path, write_results_csv
from .send import SendOptions, send_all, send_batches
from .validate import Email, validate

VENUE_ZONE = "venue"


@dataclass(frozen=True)
class RunOptions:
    """What a run may be told (each ``None`` means: the mapping file's option, else the
    profile's, else the default).

    ``timezone``: IANA zone of the sheet's times, or ``"venue"`` for the zone of ``venue_id``;
    ``date_order``: ``dmy`` or ``mdy`` for dates like 03/04/2026; ``default_time``: time of day
    given to dates without one (09:00); ``key``: a column that identifies a row (the same value
    twice is refused); ``all_or_nothing``: send nothing when any row is invalid.
    """

    results: Path | None = None
    concurrency: int = 32
    rate: float | None = None
    sheet: str | None = None
    encoding: str | None = None
    profile: str | None = None
    mapping: Path | None = None
    timezone: str | None = None
    venue_id: int | None = None
    date_order: DateOrder | None = None
    default_time: clock_time | None = None
    key: str | None = None
    all_or_nothing: bool = False
    via: str = "rows"


@dataclass
class Prepared:
    """A source read and mapped, with what one pass over it showed."""

    source: Source
    mapping: ColumnMapping
    rules: DateRules
    rows: int
    warnings: list[str]
    #: The ids and e-mails the rows refer to, for the online checks.
    needed: Needed = field(default_factory=Needed)

    def normaliser(self) -> Normaliser:
        return Normaliser(
            self.mapping,
            self.rules,
            self.source.headers,
            text_only=self.source.kind == "text",
        )


#: The kind of record each id field refers to.
ID_KINDS = {
    "id": "task",
    "leadId": "lead",
    "contactId": "contact",
    "companyId": "company",
    "venueId": "venue",
    "assignedUserId": "user",
}


class FirstPass:
    """What the first pass learns: the due column's date order, and the distinct ids and
    e-mails each id column refers to (each distinct cell converted once)."""

    def __init__(self, headers: list[str], mapping: ColumnMapping) -> None:
        self.evidence = DateEvidence()
        self.needed = Needed()
        due = mapping.columns.get("endDatetime")
        self._due = headers.index(due) if due in headers else None
        self._ids = [
            (ID_KINDS[name], headers.index(column), set())
            for name, column in mapping.columns.items()
            if name in ID_KINDS and column in headers
        ]

    def __call__(self, batch: Batch) -> None:
        columns = batch.columns
        if self._due is not None:
            self.evidence.observe_column(batch.numbers, columns[self._due])
        for kind, position, seen in self._ids:
            fresh = set(columns[position]) - seen
            seen.update(fresh)
            convert = to_id_or_email if kind in ("contact", "user") else to_integer
            for raw in fresh:
                try:
                    value = convert(raw) if not is_blank(raw) else None
                except CellError:
                    continue  # reported by normalise in its pass
                if isinstance(value, Email):
                    emails = (
                        self.needed.user_emails if kind == "user" else self.needed.contact_emails
                    )
                    emails.add(str(value))
                elif value is not None:
                    self.needed.ids[kind].add(value)


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
    if options.key is not None and options.key not in source.headers:
        raise UsageError(
            f"--key {options.key!r}: no such column; the columns are: "
            + ", ".join(repr(h) for h in source.headers)
        )
    rules = date_rules(options, mapping, source, venue_zone)
    warnings = [*source.notes, *mapping.warnings]

    count, seen = source.scan(lambda: FirstPass(source.headers, mapping))
    first = seen or FirstPass(source.headers, mapping)
    evidence = first.evidence
    due_column = mapping.columns.get("endDatetime")
    if options.venue_id is not None:
        first.needed.ids["venue"].add(options.venue_id)
    if rules.order is None:
        rules = dataclasses.replace(rules, order=evidence.order())
        if conflict := evidence.conflict():
            warnings.append(f"column {due_column!r}: {conflict}")
    if mapping.suggested_key:
        warnings.append(
            f"column {mapping.suggested_key!r} identifies rows in this export: give "
            f"--key {mapping.suggested_key!r} to update them on later runs"
        )
    return Prepared(
        source=source,
        mapping=mapping,
        rules=rules,
        rows=count,
        warnings=warnings,
        needed=first.needed,
    )


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


DUPLICATE_KEY = "DUPLICATE_KEY"
#: How many rows' contents are remembered to warn of identical rows (memory stays bounded).
_IDENTICAL_LIMIT = 2_000_000


def checked_rows(
    prepared: Prepared,
    directory: Directory | None = None,
    *,
    default_venue: int | None = None,
    key: str | None = None,
) -> Iterator[tuple[Row, Payload | Outcome]]:
    """Every row with its payload ready to send, or with the ``invalid`` outcome that stops it:
    normalised, validated (online when a ``directory`` is given), the same ``key`` value twice
    refused (:func:`prepare` checked the column exists), identical rows warned of."""
    normaliser = prepared.normaliser()
    first_of_key: dict[str, int] = {}
    first_of_content: dict[int, int] = {}
    for batch in prepared.source.batches():
        for row, normalised in normaliser.batch(batch).items():
            checked = normalised
            if isinstance(normalised, Payload):
                checked = validate(normalised, directory, default_venue=default_venue)
            if key is not None:
                value = str(row.cells.get(key) or "").strip()
                if value and value in first_of_key:
                    first = first_of_key[value]
                    checked = Outcome(
                        "invalid",
                        error_code=DUPLICATE_KEY,
                        field=key,
                        message=f"{key} {value!r} is already on row {first}",
                        warnings=checked.warnings,
                    )
                elif value:
                    first_of_key[value] = row.number
            elif isinstance(checked, Payload) and len(first_of_content) < _IDENTICAL_LIMIT:
                content = hash(tuple(sorted(checked.params.items())))
                first = first_of_content.setdefault(content, row.number)
                if first != row.number:
                    checked = checked._replace(
                        warnings=(*checked.warnings, f"identical to row {first}")
                    )
            yield row, checked


async def prepare_online(
    source_path: str | Path, client: IvvyClient | None, options: RunOptions
) -> tuple[Prepared, Directory | None]:
    """The source prepared (:func:`prepare`) and, with a ``client``, the account's records its
    rows refer to, fetched once. The source is read before anything is asked of iVvy (a bad
    source is a usage error whatever the network), except when ``--timezone venue`` needs the
    venue's zone first; the credentials are checked (``ping``) before any other call."""
    wants_venue_zone = str(options.timezone or "").lower() == VENUE_ZONE
    if wants_venue_zone and (client is None or options.venue_id is None):
        raise UsageError("--timezone venue needs --venue-id and a connection to iVvy")
    if client is None:
        return prepare(source_path, options), None
    prepared = None if wants_venue_zone else prepare(source_path, options)
    await client.ping()
    if prepared is None:
        zone = await venue_timezone(client, options.venue_id)  # type: ignore[arg-type]
        prepared = prepare(source_path, options, venue_zone=zone)
    directory = Directory(client)
    await directory.load(prepared.needed)
    return prepared, directory


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
    #: Rows that need a person, by error code.
    codes: Counter[str] = field(default_factory=Counter)
    #: 429s met while sending, and creates whose lost answer was found by a look-up.
    rate_limited: int = 0
    reconciled: int = 0
    #: Time spent sending (the checks of each row included, as rows stream to the send stage).
    send_seconds: float = 0.0
    #: Whether the run was stopped (Ctrl-C, SIGTERM) before it went through every row.
    interrupted: bool = False

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """0 when every row is created, updated or unchanged; 1 when any needs a person; 130
        when the run was stopped."""
        if self.interrupted:
            return 130
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
            "error_codes": {str(code): n for code, n in self.codes.items()},
            "rate_limited": self.rate_limited,
            "reconciled": self.reconciled,
            "interrupted": self.interrupted,
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
    source_path: str | Path,
    client: IvvyClient,
    options: RunOptions = RunOptions(),
    *,
    stop: asyncio.Event | None = None,
    progress: Callable[[Outcome], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> RunSummary:
    """Import every row of ``source_path`` through ``client``; the run's summary.

    Raises :class:`~importer.errors.ImporterError` before sending anything when the source,
    the mapping or an option is unusable, and :class:`~importer.client.IvvyError` when iVvy
    cannot be reached or refuses the credentials before any row is sent. Setting ``stop`` stops
    the run (:func:`~importer.send.send_all` says how); rows it never sent are ``skipped``.
    ``started(rows)`` is called once the rows are counted, ``progress(outcome)`` once per row.
    """
    clock = time.monotonic()
    stop = stop or asyncio.Event()
    prepared, directory = await prepare_online(source_path, client, options)
    source = prepared.source
    summary, results_path = _summary(prepared, options, client)
    journal = MemoryJournal(progress)
    if started is not None:
        started(prepared.rows)
    check = {"default_venue": options.venue_id, "key": options.key}

    if options.all_or_nothing:
        invalid = sum(isinstance(c, Outcome) for _, c in checked_rows(prepared, directory, **check))
        if invalid:
            note = f"not sent: {invalid} rows are invalid and --all-or-nothing was given"
            for row, checked in checked_rows(prepared, directory, **check):
                if isinstance(checked, Payload):
                    checked = Outcome("skipped", message=note, warnings=checked.warnings)
                journal.done(row.number, checked)
            summary.warnings.append(note)
            return _finish(summary, journal, source, results_path, clock)

    def ready() -> Iterator[Payload]:
        for row, checked in checked_rows(prepared, directory, **check):
            if stop.is_set():
                return
            journal.pending(row.number)
            if isinstance(checked, Outcome):
                journal.done(row.number, checked)
                continue
            journal.in_flight(row.number)
            yield checked

    def record(payload: Payload, outcome: Outcome) -> None:
        warnings = payload.warnings + outcome.warnings
        journal.done(payload.row.number, dataclasses.replace(outcome, warnings=warnings))

    sending = SendOptions(concurrency=options.concurrency, rate=options.rate)
    began = time.monotonic()
    deliver = send_batches if options.via == "batch" else send_all
    reconciler = await deliver(client, ready(), record, sending, stop=stop)
    summary.send_seconds = time.monotonic() - began
    summary.rate_limited = reconciler.rate_limited
    summary.reconciled = reconciler.found
    summary.interrupted = stop.is_set()
    return _finish(summary, journal, source, results_path, clock)


def _summary(
    prepared: Prepared, options: RunOptions, client: IvvyClient | None
) -> tuple[RunSummary, Path]:
    """A run's summary as it begins, and where its results go."""
    results = options.results or default_results_path(prepared.source.path)
    target = client.credentials.target if client else "offline (no credentials)"
    summary = RunSummary(
        source=prepared.source.path,
        results=results,
        target=target,
        warnings=list(prepared.warnings),
    )
    return summary, results


def _finish(
    summary: RunSummary, journal: MemoryJournal, source: Source, results: Path, clock: float
) -> RunSummary:
    """Write the results from the journal, in source order; the summary, completed. A row the
    run never reached (it was stopped) is ``skipped``."""
    never = Outcome("skipped", message="not sent: the run was stopped before this row")
    for row in source.rows():
        if journal.outcome(row.number) is None:
            journal.done(row.number, never)
    outcomes = ((row, journal.outcome(row.number)) for row in source.rows())
    write_results_csv(results, source.headers, outcomes)  # type: ignore[arg-type]
    summary.counts = journal.counts()
    summary.codes = journal.codes()
    summary.seconds = time.monotonic() - clock
    return summary


async def validate_source(
    source_path: str | Path, client: IvvyClient | None, options: RunOptions = RunOptions()
) -> RunSummary:
    """Every check of a run, online ones when a ``client`` is given, and nothing sent to
    addOrUpdateTask: a results sheet whose ``result`` is ``valid`` or ``invalid``."""
    clock = time.monotonic()
    prepared, directory = await prepare_online(source_path, client, options)
    source = prepared.source
    summary, results_path = _summary(prepared, options, client)
    if directory is None:
        summary.warnings.append(
            "offline: ids, users and venues were not checked against iVvy (set IVVY_API_KEY "
            "and IVVY_API_SECRET, or give --sandbox)"
        )
    journal = MemoryJournal()
    for row, checked in checked_rows(
        prepared, directory, default_venue=options.venue_id, key=options.key
    ):
        if isinstance(checked, Payload):
            checked = Outcome("valid", warnings=checked.warnings)
        journal.done(row.number, checked)
    return _finish(summary, journal, source, results_path, clock)
