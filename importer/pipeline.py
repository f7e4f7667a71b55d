"""The pipeline: read → map → normalise → validate → send → record → write results.

:func:`prepare` reads and maps a source and makes one pass over it (every row readable, the date
order of the due column, the row count) before anything is sent; :func:`checked_rows` streams
each row normalised and validated; :func:`run_import` is the whole job. The CLI only wires
options to these.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any, get_args

from .client import ApiError, IvvyClient, IvvyError
from .dates import DateEvidence, DateOrder, DateRules, zone_named
from .directory import Directory, Needed, tasks_among
from .errors import RunFailed, UsageError
from .fields import BATCH_NOT_DONE, DUPLICATE_KEY, UNREAD
from .journal import (
    InFlight,
    Journal,
    Known,
    RunJournal,
    RunRecord,
    default_journal_path,
    digest_of,
    fingerprint,
    is_done,
    read_only_journal,
)
from .map import ColumnMapping, MappingFile, load_mapping_file, map_columns
from .model import SUCCESSFUL, Email, Outcome, Payload, Result, Row, RowResult
from .normalise import CellError, Normaliser, to_id_or_email, to_integer
from .progress import OnEvent, Tally
from .read import Batch, Source, is_blank, open_source
from .reconcile import SETTLE, SLACK, Reconciler
from .results import (
    check_results_path,
    default_results_path,
    earlier_columns,
    open_results,
    unneutralise,
    whole,
)
from .send import (
    DEFAULT_CALLBACK,
    INTERRUPTED,
    KEEP_IN_FLIGHT,
    SendOptions,
    SendStats,
    batch_pending,
    job_error,
    job_verdict,
    match_results,
    not_saved,
    send_all,
    send_batches,
)
from .validate import validate

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
    #: A mapping file's path, or its value (:func:`~importer.map.load_mapping_file`).
    mapping: Path | MappingFile | None = None
    timezone: str | None = None
    venue_id: int | None = None
    date_order: DateOrder | None = None
    default_time: clock_time | None = None
    key: str | None = None
    all_or_nothing: bool = False
    via: str = "rows"
    #: The journal file (default: one per target under the user's data directory).
    state: Path | None = None
    #: Go on with this source's stopped run; begin a new run although one was made before.
    resume: bool = False
    new_run: bool = False
    #: For a results sheet read back: the earlier results whose rows are sent again.
    only: frozenset[str] | None = None
    #: With ``--key``: a task deleted in iVvy since it was imported is created again.
    recreate_missing: bool = False
    #: Cells corrected by a person (``serve``): (row number, column) → the value to read.
    fixes: Mapping[tuple[int, str], Any] | None = None
    #: Batch mode: the callbackUrl sent with each batch, and how long a batch may take.
    callback_url: str = DEFAULT_CALLBACK
    batch_wait: float = 300.0
    #: How long a lost create waits before it is looked up (late writes, lagging reads).
    settle: float = SETTLE
    #: Whether rows may update tasks this tool did not make (ids of unknown origin): ``None``
    #: when a mapping file that names the id column says so, ``False`` never (the page asks
    #: instead), ``True`` (``--update-existing``) always.
    update_existing: bool | None = None

    def __post_init__(self) -> None:
        # Paths may be given as text (``RunOptions(results="out.xlsx")``).
        for name in ("results", "state", "mapping"):
            value = getattr(self, name)
            if isinstance(value, str | os.PathLike) and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))


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
    #: For a results sheet read back as a source: our column name → its header.
    earlier: dict[str, str] | None = None
    #: The rows that give each task id (the id column's), and the run references a results
    #: sheet's rows carry.
    task_rows: Counter[tuple[str, int]] = field(default_factory=Counter)
    refs: set[str] = field(default_factory=set)

    @property
    def id_column(self) -> str | None:
        """The column read as task ids, if any."""
        return self.mapping.columns.get("id")

    def may_update_theirs(self, options: RunOptions) -> bool:
        """Whether the user said in words that rows may update tasks this tool did not make."""
        if options.update_existing is not None:
            return options.update_existing
        return self.mapping.how.get("id", "").startswith("mapping file")

    @property
    def data_headers(self) -> list[str]:
        """The source's own columns (a results sheet's earlier result columns left out)."""
        headers = self.source.headers
        return headers[: -len(self.earlier)] if self.earlier else headers

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

    def __init__(
        self, headers: list[str], mapping: ColumnMapping, ref_column: str | None = None
    ) -> None:
        self.evidence = DateEvidence()
        self.needed = Needed()
        due = mapping.columns.get("endDatetime")
        self._due = headers.index(due) if due in headers else None
        self._ids: list[tuple[str, int, set[Any]]] = [
            (ID_KINDS[name], headers.index(column), set())
            for name, column in mapping.columns.items()
            if name in ID_KINDS and column in headers
        ]
        task = mapping.columns.get("id")
        self._task = headers.index(task) if task in headers else None
        self._ref = headers.index(ref_column) if ref_column in headers else None
        #: (run reference, task id cell) → rows.
        self._task_cells: Counter[tuple[str, Any]] = Counter()
        self.refs: set[str] = set()

    def task_rows(self) -> Counter[tuple[str, int]]:
        """How many rows give each task id, by the run reference they carry ("" for none)."""
        rows: Counter[tuple[str, int]] = Counter()
        for (ref, raw), n in self._task_cells.items():
            try:
                value = to_integer(raw) if not is_blank(raw) else None
            except CellError:
                continue
            if isinstance(value, int):
                rows[(ref, value)] += n
        return rows

    def __call__(self, batch: Batch) -> None:
        refs: list[str] | None = None
        if self._ref is not None:
            refs = ["" if is_blank(v) else str(v).strip() for v in batch.column(self._ref)]
            self.refs.update(filter(None, refs))
        if self._task is not None:
            cells = batch.column(self._task)
            self._task_cells.update(zip(refs or [""] * len(cells), cells, strict=True))
        if self._due is not None:
            self.evidence.observe_column(batch.numbers, batch.column(self._due))
        for kind, position, seen in self._ids:
            fresh = set(batch.column(position)) - seen
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


def open_mapped(
    source_path: str | Path, options: RunOptions, *, require: bool = True
) -> tuple[Source, dict[str, str] | None, ColumnMapping]:
    """The source opened (corrections applied as it is read, a results sheet's cells given
    back as written), whether it is a results sheet (our columns by name), and its mapping.
    ``require=False`` maps even while a field every create needs has no column (a page showing
    what is mapped so far)."""
    mapping_file = (
        options.mapping
        if isinstance(options.mapping, MappingFile) or options.mapping is None
        else load_mapping_file(options.mapping)
    )
    sheet = options.sheet or (mapping_file.options.get("sheet") if mapping_file else None)
    source = open_source(source_path, sheet=sheet, encoding=options.encoding)
    earlier = earlier_columns(source.headers)
    if earlier is not None:
        source.cell_filter = unneutralise
    elif options.only is not None:
        raise UsageError(
            f"--only picks rows of a results sheet by their result; {source.path} is not a "
            "results sheet (it has no 'result' and 'task_id' columns at its end)"
        )
    headers = source.headers[: -len(earlier)] if earlier else source.headers
    for (number, column), value in (options.fixes or {}).items():
        if column not in source.headers:
            raise UsageError(f"a correction names column {column!r}, which the source lacks")
        source.patches.setdefault(number, {})[source.headers.index(column)] = value
    mapping = map_columns(
        headers,
        path=source.path,
        sheet=source.sheet,
        profile=options.profile,
        mapping_file=mapping_file,
        require=require,
    )
    notes: list[str] = []
    own = mapping.columns.get("id")
    if options.key is not None and own == options.key:
        # The key is the export's own id for its rows: never an iVvy task id as well.
        notes.append(
            f"column {own!r} is the --key (this export's own ids): it is not read as iVvy task ids"
        )
        own = None
    if earlier is not None:
        # Rows that became tasks are updated: the earlier results' task_id is their id.
        if own is not None:
            notes.append(
                f"column {own!r} is not read as task ids: a results sheet's task ids are in its "
                f"{earlier['task_id']!r} column"
            )
        own = earlier["task_id"]
    if own != mapping.columns.get("id"):
        columns = {f: c for f, c in mapping.columns.items() if f != "id"}
        how = {f: h for f, h in mapping.how.items() if f != "id"}
        if own is not None:
            columns["id"], how["id"] = own, "results sheet"
        mapping = dataclasses.replace(
            mapping, columns=columns, how=how, warnings=(*mapping.warnings, *notes)
        )
    return source, earlier, mapping


def prepare(
    source_path: str | Path, options: RunOptions = RunOptions(), *, venue_zone: str | None = None
) -> Prepared:
    """Open and map the source, then pass over every row once.

    Raises :class:`~importer.errors.SourceError` when any row cannot be read and
    :class:`~importer.errors.UsageError` for a bad option or mapping file: either way before
    anything is sent. ``venue_zone`` is the zone of ``--venue-id``, looked up by the caller when
    ``--timezone venue`` is asked for.
    """
    source, earlier, mapping = open_mapped(source_path, options)
    if options.key is not None and options.key not in source.headers:
        raise UsageError(
            f"--key {options.key!r}: no such column; the columns are: "
            + ", ".join(repr(h) for h in source.headers)
        )
    rules = date_rules(options, mapping, source, venue_zone)
    key_column = f"column {options.key!r} is not imported"
    warnings = [*source.notes, *(w for w in mapping.warnings if not w.startswith(key_column))]

    ref_column = earlier.get("run_ref") if earlier else None
    count, seen = source.scan(lambda: FirstPass(source.headers, mapping, ref_column))
    first = seen or FirstPass(source.headers, mapping, ref_column)
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
        earlier=earlier,
        task_rows=first.task_rows(),
        refs=first.refs,
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


#: How many rows' contents are remembered to warn of identical rows (memory stays bounded).
_IDENTICAL_LIMIT = 2_000_000


def checked_rows(
    prepared: Prepared,
    directory: Directory | None = None,
    *,
    default_venue: int | None = None,
    key: str | None = None,
    only: frozenset[str] | None = None,
    numbers: Collection[int] | None = None,
) -> Iterator[tuple[Row, Payload | Outcome]]:
    """Every row with its payload ready to send, or with the ``invalid`` outcome that stops it:
    normalised, validated (online when a ``directory`` is given), the same ``key`` value twice
    refused (:func:`prepare` checked the column exists), identical rows warned of. For a
    results sheet read back with ``only``, a row whose earlier result is not among ``only``
    keeps its earlier outcome. With ``numbers``, only the rows of those numbers (the others are
    read, not checked: a re-check of rows a person corrected; the checks across rows, a key
    given twice and identical rows, then see only these rows)."""
    normaliser = prepared.normaliser()
    first_of_key: dict[str, int] = {}
    first_of_content: dict[int, int] = {}
    earlier = prepared.earlier
    for batch in prepared.source.batches():
        if numbers is not None:
            keep = [i for i, n in enumerate(batch.numbers) if n in numbers]
            if not keep:
                continue
            batch = Batch([batch.numbers[i] for i in keep], [batch.rows[i] for i in keep])
        for row, normalised in normaliser.batch(batch).items():
            if earlier is not None and only is not None:
                before = str(row.cells.get(earlier["result"]) or "").strip()
                if before not in only:
                    yield row, _kept(row, earlier, before)
                    continue
            checked = normalised
            if isinstance(normalised, Payload):
                checked = validate(normalised, directory, default_venue=default_venue)
            if key is not None:
                value = key_of(row, key)  # as the journal keys it: 1234.0 is 1234
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
    await client.measure_clock()
    if prepared is None:
        zone = await venue_timezone(client, options.venue_id)  # type: ignore[arg-type]
        prepared = prepare(source_path, options, venue_zone=zone)
    directory = Directory(client)
    await directory.load(prepared.needed)
    return prepared, directory


RESULTS: frozenset[str] = frozenset(get_args(Result))


def key_of(row: Row, key: str) -> str:
    """A row's legacy id (``--key``) as text: ``1234`` for a workbook's 1234.0."""
    value = row.cells.get(key)
    return "" if is_blank(value) else str(whole(value)).strip()


def _kept(row: Row, earlier: dict[str, str], result: str) -> Outcome:
    """A row of a results sheet that ``--only`` did not pick: its earlier outcome, as it was."""

    def cell(name: str) -> Any:
        value = whole(row.cells.get(earlier[name]))
        if isinstance(value, str):
            value = value.strip()
            value = int(value) if value.isdigit() else value
        return None if is_blank(value) else value

    task_id = cell("task_id")
    warnings = [w for w in str(cell("warnings") or "").split("; ") if w]
    return Outcome(
        result if result in RESULTS else "skipped",  # type: ignore[arg-type]
        task_id=task_id if isinstance(task_id, int) else None,
        error_code=cell("error_code"),
        field=cell("field"),
        message=str(cell("message") or ""),
        warnings=(*warnings, "kept from the earlier results: not picked by --only"),
    )


@dataclass
class RunSummary:
    """What a run did, for people (``describe``) and schedulers (``as_dict``, ``exit_code``)."""

    source: Path
    results: Path | None
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
    #: Why iVvy ended the session mid-run (462 Session Expired, 463 Key Revoked), if it did.
    session_ended: str | None = None
    #: The journal file and this run's number in it (``None`` for ``validate``).
    journal: Path | None = None
    run_id: int | None = None
    #: ``validate``: what a run would do with the rows (create, update…: see :data:`CREATE`).
    plan: Counter[str] = field(default_factory=Counter)
    #: ``validate``: why a run of this source would be refused (exit 2), if it would be; and
    #: when this very file was imported into the target before, what that run did.
    refusal: str | None = None
    previous: str | None = None
    #: How the dates were read (decided from every row): a re-check of a few rows is one with
    #: the full check before it only while these stay the same.
    rules: DateRules | None = None
    #: For an undo, the import run it undoes.
    undoes: int | None = None

    #: Where :meth:`rows` reads the results from (set by the API, the run or the check).
    _rows: Callable[[], Iterator[RowResult]] | None = field(default=None, repr=False)

    @property
    def row_count(self) -> int:
        """How many rows the summary counts."""
        return sum(self.counts.values())

    def rows(self) -> Iterator[RowResult]:
        """Every row with its cells and its outcome, in source order, streamed from the
        results (bounded memory: a million rows are never held at once)."""
        if self._rows is None:
            raise UsageError("this summary has no rows to give (no results were written)")
        return self._rows()

    def rows_from(self, source: Callable[[], Iterator[RowResult]]) -> None:
        self._rows = source

    @property
    def needs_attention(self) -> bool:
        """Whether a person must look: a row that is not created, updated, unchanged or valid
        (invalid, failed, skipped), a run stopped before its end or by iVvy, or a refusal."""
        return self.exit_code != 0

    def raise_for_failures(self) -> RunSummary:
        """Raise :class:`~importer.errors.RunFailed` (carrying this summary) when the run
        :attr:`needs_attention`, for a scheduler to fail its task; else this summary."""
        if not self.needs_attention:
            return self
        if self.refusal:
            why = self.refusal
        elif self.session_ended:
            why = f"iVvy ended the session ({self.session_ended})"
        elif self.interrupted:
            why = "the run was stopped before its end"
        else:
            bad = {r: n for r, n in self.counts.items() if r not in SUCCESSFUL}
            why = ", ".join(f"{n} {r}" for r, n in sorted(bad.items())) + " rows"
            if self.codes:
                why += " (" + ", ".join(f"{c}: {n}" for c, n in self.codes.most_common(5)) + ")"
        raise RunFailed(self, f"{why}; results: {self.results}")

    @property
    def exit_code(self) -> int:
        """0 when every row is created, updated or unchanged; 1 when any needs a person; 130
        when the run was stopped; 3 when iVvy ended the session (expired, key revoked); 2 when
        ``validate`` found that the run would be refused."""
        if self.refusal:
            return 2
        if self.session_ended:
            return 3
        if self.interrupted:
            return 130
        return 0 if set(self.counts) <= SUCCESSFUL else 1

    def as_dict(self) -> dict[str, Any]:
        """The summary a scheduler reads (``--json``; its schema is in the README)."""
        return {
            "source": str(self.source),
            "results": str(self.results),
            "journal": str(self.journal) if self.journal else None,
            "run": self.run_id,
            "target": self.target,
            "rows": self.row_count,
            "counts": dict(self.counts),
            "error_codes": {str(code): n for code, n in self.codes.items()},
            "plan": dict(self.plan) if self.plan else None,
            "refusal": self.refusal,
            "previous": self.previous,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.row_count / self.seconds, 1) if self.seconds else None,
            "warnings": self.warnings,
            "rate_limited": self.rate_limited,
            "reconciled": self.reconciled,
            "interrupted": self.interrupted,
            "session_ended": self.session_ended,
            "exit_code": self.exit_code,
        }

    def sheet_lines(self) -> list[tuple[str, Any]]:
        """The summary as the XLSX results' Summary sheet shows it."""
        lines: list[tuple[str, Any]] = [
            (f"rows {result}", n) for result, n in sorted(self.counts.items())
        ]
        lines += [
            ("rows", self.row_count),
            ("started (UTC)", self.started.replace(tzinfo=None, microsecond=0)),
            ("seconds", round(self.seconds, 1)),
            ("rows per second", round(self.row_count / self.seconds, 1) if self.seconds else None),
            ("source", str(self.source)),
            ("target", self.target),
            ("journal", str(self.journal or "")),
            ("run", self.run_id),
            ("answers 429 (slowed down)", self.rate_limited),
            ("lost answers found by a look-up", self.reconciled),
            ("interrupted", "yes" if self.interrupted else "no"),
        ]
        lines += [(f"plan: {verb}", n) for verb, n in sorted(self.plan.items())]
        if self.refusal:
            lines.append(("a run would be refused", self.refusal))
        lines += [("warning", w) for w in self.warnings]
        return lines

    def describe(self) -> str:
        parts = ", ".join(f"{n} {result}" for result, n in sorted(self.counts.items()))
        plan = ", ".join(f"{n} {verb}" for verb, n in sorted(self.plan.items()))
        return (
            f"{self.row_count} rows in {self.seconds:.1f} s: {parts or 'nothing to do'}"
            + (f" (plan: {plan})" if plan else "")
            + f". Results: {self.results}"
            + (f" (run {self.run_id})" if self.run_id is not None else "")
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


async def settle_in_flight(
    journal: Journal, target: str, reconciler: Reconciler, client: IvvyClient
) -> set[int]:
    """Rows of earlier runs into ``target`` that were in flight when their run was stopped or
    killed. Rows of a batch iVvy queued are settled by asking the batch API for its results
    first; a create with no answer is looked up (:meth:`Reconciler.settle`: found, done with the
    task it made; not there, pending again; ambiguous, failed so); an update is pending again
    (sending it again sets the same values). A row that cannot be settled yet (its batch has not
    completed, no look-up could be made) stays in flight and is not sent. The runs whose rows
    were looked at."""
    rows = journal.in_flight(target)
    if not rows:
        return set()
    since = min(r.sent_at for r in rows) - timedelta(seconds=SLACK)
    reconciler.own_all(journal.tasks_sent_since(since))
    batches = journal.batches_of(rows)
    settled: dict[tuple[int, int], Outcome | None] = {}
    for async_id, members in batches.items():
        settled.update(await _ask_batch(client, reconciler, async_id, members))
    unknown = [r for r in rows if (r.run, r.number) not in settled and r.params.get("id") is None]
    # Explained by each other: a task like any of them in a look-up is not another writer's.
    looked = await reconciler.settle_many([(r.params, r.sent_at) for r in unknown])
    settled.update({(r.run, r.number): o for r, o in zip(unknown, looked, strict=True)})
    key_columns: dict[int, str | None] = {}
    for row in rows:
        outcome = settled.get((row.run, row.number))
        if outcome is not None and outcome.error_code in KEEP_IN_FLIGHT:
            continue  # not settled yet: stays in flight, and is not sent
        journal.settle(target, row, outcome)
        if outcome is not None and outcome.task_id is not None and row.key:
            if row.run not in key_columns:
                record = journal.run(row.run)
                key_columns[row.run] = record.options.get("key") if record else None
            if column := key_columns[row.run]:
                journal.set_key(
                    target, column, row.key, outcome.task_id, digest_of(row.params), row.run
                )
    return {row.run for row in rows}


async def _ask_batch(
    client: IvvyClient, reconciler: Reconciler, async_id: str, members: list[InFlight]
) -> dict[tuple[int, int], Outcome | None]:
    """What iVvy's batch API says of a batch an earlier run sent: each member row's outcome
    from its result (matched by its request); members not answered (left out, a server error)
    are not in the answer, for a look-up; a batch not completed keeps its rows in flight."""
    try:
        answer = await client.call("batch", "results", {"async": async_id})
    except ApiError as exc:
        if exc.specific_code == BATCH_NOT_DONE:
            pending = batch_pending(f"batch {async_id} has still not completed")
            return {(m.run, m.number): pending for m in members}
        return {}  # unknown or expired (results are kept two days): look the rows up
    results = answer.get("results") if isinstance(answer, dict) else None
    answered = match_results(results or [], ((n, m.params) for n, m in enumerate(members)))
    settled: dict[tuple[int, int], Outcome | None] = {}
    for index, response in answered.items():
        member = members[index]
        verdict = job_verdict(response)
        if verdict == "done":
            task_id = int(response["id"])
            reconciler.own(task_id)  # sent by an earlier run: when is not known here
            result_name: Result = "updated" if member.params.get("id") is not None else "created"
            settled[(member.run, member.number)] = Outcome(result_name, task_id=task_id)
        elif verdict == "not_saved":
            settled[(member.run, member.number)] = not_saved(response)
        elif verdict == "refused":
            error = job_error(response)
            settled[(member.run, member.number)] = Outcome(
                "failed", error_code=error.code, message=error.full_message
            )
        # unknown (it may have run) or not run (429): looked up, then sent if not there
    return settled


_PAYLOAD_OPTIONS = (
    "sheet", "encoding", "profile", "mapping", "timezone", "venue_id", "date_order",
    "default_time", "key", "via", "only",
)  # fmt: skip


def begin_run(
    journal: Journal,
    prepared: Prepared,
    options: RunOptions,
    target: str,
    results: Path,
    *,
    settled: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[RunRecord, bool, list[str]]:
    """This run's record in the journal: a new one, or (``--resume``) the stopped run of this
    source; whether it resumes; what a person should know. UsageError when the source was run
    into this target before and neither ``--resume``, ``--key`` nor ``--new-run`` says what to
    do now."""
    source = prepared.source
    # The file's fingerprint, whatever cells a person corrected: corrections do not make it
    # another source (its rows are the same rows).
    print_ = fingerprint(source.path, source.sheet)
    latest = journal.latest(target, print_)
    notes: list[str] = []
    where = f"{source.path} into {target} (journal {journal.path})"
    if options.resume:
        if latest is None:
            raise UsageError(f"nothing to resume: no run of {where}; run it without --resume")
        counts = journal.row_counts(latest.id)
        # A finished run goes on while rows of it were unsettled: just settled (its results
        # are to be written again), still in flight, or pending again (to be sent).
        if (
            latest.status == "finished"
            and latest.id not in settled
            and not counts["in_flight"]
            and (sum(counts.values()) >= prepared.rows)
        ):
            raise UsageError(
                f"nothing to resume: run {latest.id} of {where} finished on {latest.finished}; "
                f"its results are in {latest.results}. To send its failed rows again: "
                f"task-import run {latest.results} --only failed"
            )
        return journal.reopen(latest.id, str(results)), True, notes
    if latest is not None and not options.new_run:
        counts = journal.row_counts(latest.id)
        done = sum(n for result, n in counts.items() if result != "in_flight")
        if latest.status != "finished" and options.key is None:
            raise UsageError(
                f"run {latest.id} of {where} stopped after {done} of {prepared.rows} rows: give "
                "--resume to go on where it stopped (rows it may have sent are looked up, not "
                "sent twice), or --new-run to begin a new run through every row (rows that "
                "already have a task are updated or left unchanged, never created again)"
            )
        if latest.status != "finished":
            notes.append(
                f"run {latest.id} of this source stopped after {done} rows; this run goes "
                f"through every row (--key: rows already imported are updated or left alone)"
            )
        elif options.key is None and (counts["created"] or counts["updated"]):
            summary = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
            raise UsageError(
                f"{source.path} was already imported into {target} on {latest.finished} (run "
                f"{latest.id}: {summary}; results: {latest.results}). To send its failed rows "
                f"again: task-import run {latest.results} --only failed,invalid. To go through "
                "every row again, give --new-run: rows that already have a task are left "
                "unchanged, or updated where they changed, never created again (for nightly "
                "exports, --key COLUMN matches rows by a column that identifies each one)"
            )
    kept: dict[str, Any] = {name: getattr(options, name) for name in _PAYLOAD_OPTIONS}
    if options.fixes:
        kept["fixes"] = len(options.fixes)
    record = journal.start(
        kind="import",
        target=target,
        source=str(source.path.resolve()),
        print_=print_,
        options=kept,
        results=str(results),
    )
    return record, False, notes


#: What a run does with a row, as ``validate`` and the plan show it.
CREATE, UPDATE, UPDATE_THEIRS, UNCHANGED, INVALID = (
    "create", "update", "update (a task this tool did not make)", "unchanged", "invalid"
)  # fmt: skip
#: Task fields read before an update (what an undo restores).
SNAPSHOT_FIELDS = (
    "name", "description", "status", "priority", "endDatetime", "assignedUserId", "contactId",
    "companyId", "leadId", "venueId", "modifiedDate",
)  # fmt: skip


def snapshot(task: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a task as iVvy lists it that an undo restores (and ``modifiedDate``)."""
    return {name: task.get(name) for name in SNAPSHOT_FIELDS if name in task}


class _Spool:
    """Decisions held in a temporary file until they are replayed (memory stays bounded), with
    the tasks they update."""

    def __init__(self) -> None:
        self._file: Any = None
        self.count = 0
        self.tasks: set[int] = set()

    def put(self, decision: Decision) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the replay)
        pickle.dump(decision, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1
        if isinstance(decision.checked, Payload) and decision.checked.is_update:
            self.tasks.add(int(decision.checked.params["id"]))

    def __bool__(self) -> bool:
        return self.count > 0

    def replay(self) -> Iterator[Decision]:
        if self._file is None:
            return
        handle, self._file, self.count = self._file, None, 0
        handle.seek(0)
        with handle:
            while True:
                try:
                    yield pickle.load(handle)
                except EOFError:
                    return


class Lineage:
    """Where each row comes from: the file first imported (its fingerprint, the *origin*) and
    the row's number there, and the reference of the run whose results sheets say so. A row of
    a results sheet of ours carries its run's reference and its number (``run_ref``, ``row``):
    read back into the same target, it is that row of that file; any other row is a row of
    this run's own source."""

    def __init__(self, known: Known, prepared: Prepared, origin: str, ref: str) -> None:
        self._known = known
        self._own = (origin, ref)
        earlier = prepared.earlier or {}
        self._ref_column = earlier.get("run_ref")
        self._line_column = earlier.get("row")
        self._origins: dict[str, str | None] = {}

    def _given(self, row: Row) -> tuple[str, int] | None:
        """The reference and number a row of a results sheet of ours carries, if it does."""
        if self._ref_column is None or self._line_column is None:
            return None
        ref = str(row.cells.get(self._ref_column) or "").strip()
        line = whole(row.cells.get(self._line_column))
        if isinstance(line, str) and line.strip().isdigit():
            line = int(line)
        return (ref, line) if ref and isinstance(line, int) and line > 0 else None

    def of(self, row: Row) -> tuple[str, int, str]:
        """``(origin, number there, reference)`` of ``row``."""
        if (given := self._given(row)) is not None:
            ref, line = given
            if ref not in self._origins:
                record = self._known.run_by_ref(ref)
                self._origins[ref] = record.lineage if record else None
            if (origin := self._origins[ref]) is not None:
                return origin, line, ref
        return self._own[0], row.number, self._own[1]

    def cells(self, row: Row) -> tuple[int, str]:
        """What the results sheet says of ``row``'s place: its number there and the reference,
        as the row carries them (known here or not), else its own."""
        if (given := self._given(row)) is not None:
            return given[1], given[0]
        _, line, ref = self.of(row)
        return line, ref


@dataclass
class Decision:
    """What is to be done with one row: ``verb`` (see :data:`CREATE`…), the payload to send
    (with the task's id for an update) or the outcome it ends with, and its place."""

    verb: str
    row: Row
    checked: Payload | Outcome
    origin: str
    line: int
    key: str | None = None
    task_id: int | None = None
    #: What the row sends (for a row left unchanged: what it would send).
    params: Mapping[str, Any] | None = None


class Planner:
    """Decides, from what the journal knows, what each row becomes: a row whose legacy id
    (``--key``) or whose place (:class:`Lineage`) already has a task is that task's update, or
    unchanged when it would send what was sent last; a row whose source gives a task id updates
    that task (a task this tool did not make is told apart); any other row is created."""

    def __init__(self, known: Known, lineage: Lineage, key: str | None) -> None:
        self.known = known
        self.lineage = lineage
        self.key = key

    def decide(self, group: list[tuple[Row, Payload | Outcome]]) -> list[Decision]:
        places = [self.lineage.of(row) for row, _ in group]
        values = [key_of(row, self.key) if self.key is not None else "" for row, _ in group]
        sending = [isinstance(c, Payload) for _, c in group]
        keyed = self.known.keys(
            self.key or "", {v for v, s in zip(values, sending, strict=True) if v and s}
        )
        wanted: dict[str, set[int]] = {}
        for (origin, line, _), value, s in zip(places, values, sending, strict=True):
            if s and value not in keyed:
                wanted.setdefault(origin, set()).add(line)
        placed = {origin: self.known.lineage(origin, lines) for origin, lines in wanted.items()}
        given = {int(c.params["id"]) for _, c in group if isinstance(c, Payload) and c.is_update}
        ours = self.known.tasks(given) if given else set()
        digests = self.known.digests(given) if given else {}
        decisions = []
        for (row, checked), (origin, line, _), value in zip(group, places, values, strict=True):
            if isinstance(checked, Outcome):
                decisions.append(Decision(INVALID, row, checked, origin, line))
                continue
            params = checked.params
            task, digest = None, None
            if checked.is_update:
                task = int(params["id"])
                digest = digests.get(task)
                here = placed.get(origin, {}).get(line)
                if here is not None and here[0] == task:
                    digest = here[1]
            elif value in keyed:
                task, digest = keyed[value]
            else:
                # Known by its place (a keyed row too: the file may have been imported without
                # its key before).
                task, digest = placed.get(origin, {}).get(line, (None, None))
            decision = Decision(CREATE, row, checked, origin, line, value or None, task, params)
            if task is None:
                pass
            elif digest == digest_of(params):
                unchanged = Outcome("unchanged", task_id=task, warnings=checked.warnings)
                decision.verb, decision.checked = UNCHANGED, unchanged
            else:
                decision.verb = UPDATE if not checked.is_update or task in ours else UPDATE_THEIRS
                if not checked.is_update:
                    decision.checked = checked._replace(params={**params, "id": task})
            decisions.append(decision)
        return decisions


def message_of(decision: Decision) -> str:
    """The plan for one row, as ``validate`` writes it in the row's message."""
    task = decision.task_id
    return {
        CREATE: "plan: create",
        UPDATE: f"plan: update task {task}",
        UPDATE_THEIRS: f"plan: update task {task}, which this tool did not make",
        UNCHANGED: f"plan: unchanged (task {task})",
    }.get(decision.verb, "")


class Feed:
    """The rows, on their way to the send stage through the journal: each group of rows is
    decided (:class:`Planner`), then written ``in_flight`` (with what it sends) before any of it
    is sent; each outcome is recorded as it comes. An update is sent with the task's values as
    they were (``before_of``, for an undo): an update whose task was not read yet is put aside
    (:attr:`later`) for :meth:`read_befores`, which reads them all at once."""

    GROUP = 64

    def __init__(
        self,
        run: RunJournal,
        rows: Iterator[tuple[Row, Payload | Outcome]],
        stop: asyncio.Event,
        decide: Callable[[list[tuple[Row, Payload | Outcome]]], list[Decision]],
        *,
        before_of: Callable[[int], Mapping[str, Any] | None] | None = None,
        keep_befores: bool = True,
    ) -> None:
        self._run = run
        self._rows = rows
        self._stop = stop
        self._decide = decide
        self._before_of = before_of
        self._keep_befores = keep_befores
        self._unsent: deque[Payload] = deque()
        self._places: dict[int, Decision] = {}
        #: Updates put aside until their tasks are read (a spool on disk, not in memory).
        self.later = _Spool()
        self._befores: dict[int, Mapping[str, Any]] = {}

    def payloads(self) -> Iterator[Payload]:
        group: list[tuple[Row, Payload | Outcome]] = []
        for row, checked in self._rows:
            if self._stop.is_set():
                return
            group.append((row, checked))
            if len(group) >= self.GROUP:
                self._admit(self._decide(group))
                group = []
                yield from self._drain()
        if not self._stop.is_set():
            self._admit(self._decide(group))
            yield from self._drain()

    def later_payloads(self) -> Iterator[Payload]:
        """The updates put aside, now that :meth:`read_befores` read their tasks."""
        group: list[Decision] = []
        for decision in self.later.replay():
            if self._stop.is_set():
                return
            group.append(decision)
            if len(group) >= self.GROUP:
                self._admit(group, deferring=False)
                group = []
                yield from self._drain()
        if not self._stop.is_set():
            self._admit(group, deferring=False)
            yield from self._drain()

    async def read_befores(self, client: IvvyClient) -> None:
        """Read the tasks of the updates put aside, in one pass over ``getTaskList``; a task
        not listed (deleted, or not visible to this key) has nothing to put back."""
        listed = await tasks_among(client, self.later.tasks)
        self._befores.update({t: snapshot(listed.get(t, {})) for t in self.later.tasks})

    def fail_later(self, message: str) -> None:
        """The updates put aside end failed (``UNREAD``): not sent."""
        for decision in self.later.replay():
            failed = Outcome("failed", error_code=UNREAD, message=message)
            self._run.done(decision.row.number, failed)
        self._run.flush()

    def _drain(self) -> Iterator[Payload]:
        while self._unsent and not self._stop.is_set():
            yield self._unsent.popleft()

    def _before(self, task: int) -> Mapping[str, Any] | None:
        if task in self._befores:
            return self._befores[task]
        found = self._before_of(task) if self._before_of is not None else None
        return snapshot(found) if found is not None else None

    def _admit(self, decisions: list[Decision], *, deferring: bool = True) -> None:
        now = time.time()
        for decision in decisions:
            checked = decision.checked
            origin, line = decision.origin, decision.line
            number = decision.row.number
            if isinstance(checked, Outcome):
                self._run.done(number, checked, key=decision.key, params=decision.params,
                               origin=origin, line=line)  # fmt: skip
                continue
            before = None
            if checked.is_update and self._keep_befores:
                before = self._before(int(checked.params["id"]))
                if before is None and deferring:
                    self.later.put(decision)
                    continue
            self._run.in_flight(number, checked.params, now, key=decision.key, before=before,
                                origin=origin, line=line)  # fmt: skip
            self._places[number] = decision
            self._unsent.append(checked)
        self._run.flush()

    def record(self, payload: Payload, outcome: Outcome) -> None:
        number = payload.row.number
        if outcome.error_code in KEEP_IN_FLIGHT:
            # It stays in flight: the next run settles it before sending anything of it.
            self._run.unsettled(number, outcome)
            self._places.pop(number, None)
            return
        decision = self._places.pop(number, None)
        if outcome.result == "skipped":
            # Not sent (iVvy ended the session first): pending again, for --resume.
            self._run.forget([number])
            return
        if payload.warnings:
            outcome = dataclasses.replace(outcome, warnings=payload.warnings + outcome.warnings)
        self._run.done(
            number, outcome, sent_at=time.time(), params=payload.params,
            key=decision.key if decision else None,
            origin=decision.origin if decision else None,
            line=decision.line if decision else None,
        )  # fmt: skip

    def batch_sent(self, async_id: str, payloads: list[Payload]) -> None:
        """iVvy queued these rows as batch ``async_id``: into the journal at once."""
        self._run.batch_sent((p.row.number for p in payloads), async_id)

    def release(self) -> None:
        """Rows written in flight but never handed to the send stage (the run was stopped) are
        pending again."""
        self._run.forget(p.row.number for p in self._unsent)
        self._unsent.clear()
        self._run.flush()


async def run_import(
    source_path: str | Path,
    client: IvvyClient,
    options: RunOptions = RunOptions(),
    *,
    stop: asyncio.Event | None = None,
    on_event: OnEvent | None = None,
) -> RunSummary:
    """Import every row of ``source_path`` through ``client``; the run's summary.

    Raises :class:`~importer.errors.ImporterError` before sending anything when the source,
    the mapping, an option or the journal is unusable, or when rows would update tasks this
    tool did not make and the user did not say so (:func:`refuse_their_tasks`), and
    :class:`~importer.client.IvvyError` when iVvy cannot be reached or refuses the credentials
    before any row is sent. Setting ``stop`` stops the run (:func:`~importer.send.send_all`
    says how); rows it never sent are ``skipped`` and stay pending in the journal for
    ``--resume``. ``on_event`` hears how it goes (:class:`~importer.model.ProgressEvent`):
    once the rows left to do are counted, as each row is recorded, and at the end.
    """
    clock = time.monotonic()
    stop = stop or asyncio.Event()
    prepared, directory = await prepare_online(source_path, client, options)
    summary, results_path = _summary(prepared, options, client)
    target = client.credentials.target
    state = options.state or default_journal_path(target)
    with Journal(state, make_folder=options.state is None) as journal:
        summary.journal = journal.path
        known = journal.known(target)
        if note := refuse_their_tasks(prepared, known, options, target):
            summary.warnings.append(note)
        options = _with_key(prepared, known, options, summary.warnings)
        reconciler = Reconciler(client, settle=options.settle)
        touched = await settle_in_flight(journal, target, reconciler, client)
        if touched:
            summary.warnings.append(
                "rows were in flight when an earlier run stopped, and were settled first: "
                f"{reconciler.found} were found in iVvy by a look-up and kept, "
                f"{reconciler.ambiguous} could not be told apart from another writer's tasks "
                "(failed, AMBIGUOUS); those not in iVvy will be sent"
            )
        record, resuming, notes = begin_run(
            journal, prepared, options, target, results_path, settled=touched
        )
        summary.warnings += notes
        summary.run_id = record.id
        lineage = Lineage(known, prepared, record.lineage, record.ref or "")
        tally = Tally(on_event)
        run = RunJournal(journal, record, key_column=options.key, on_done=tally.row)
        finished = run.done_numbers() if resuming else bytearray()
        tally.started(prepared.rows - int.from_bytes(finished, "little").bit_count())
        rows = checked_rows(prepared, directory, default_venue=options.venue_id,
                            key=options.key, only=options.only)  # fmt: skip
        if resuming:
            rows = ((r, c) for r, c in rows if not is_done(finished, r.number))
        invalid = 0
        if options.all_or_nothing and not resuming:
            rows, invalid = _spooled(rows)
        if invalid:
            note = f"not sent: {invalid} rows are invalid and --all-or-nothing was given"
            summary.warnings.append(note)
            for row, checked in rows:
                if isinstance(checked, Payload):
                    checked = Outcome("skipped", message=note, warnings=checked.warnings)
                run.done(row.number, checked)
        else:
            planner = Planner(known, lineage, options.key)

            def before_of(task: int) -> Mapping[str, Any] | None:
                # An update in flight when a run stopped read the task as it was first.
                found: Mapping[str, Any] | None = known.before(task)
                if found is None and directory is not None:
                    found = directory.task(task)
                return found

            feed = Feed(run, rows, stop, planner.decide, before_of=before_of)
            await _send(client, feed, options, reconciler, stop, summary, tally)
        if reconciler.others_writing:
            summary.warnings.append(
                f"someone else made {reconciler.others_writing} tasks in the account during "
                "this run: creates whose answers were lost and that had a task like them were "
                "left failed (AMBIGUOUS) for you to check, not taken"
            )
        if client.clock_note:
            summary.warnings.append(client.clock_note)
        summary.reconciled = reconciler.found
        summary.interrupted = stop.is_set()
        merged = _merged(prepared.source.rows(), run.outcomes())
        _finish(summary, merged, prepared, results_path, clock, lineage.cells)
        journal.end(record.id, "stopped" if summary.interrupted else "finished")
    tally.finished()
    return summary


async def _send(
    client: IvvyClient,
    feed: Feed,
    options: RunOptions,
    reconciler: Reconciler,
    stop: asyncio.Event,
    summary: RunSummary,
    tally: Tally,
) -> None:
    """The send stage over the feed's rows; then, when updates were put aside until their
    tasks were read, those (the tasks read in one pass first)."""
    sending = SendOptions(
        concurrency=options.concurrency,
        rate=options.rate,
        recreate_missing=options.recreate_missing,
        settle=options.settle,
        callback_url=options.callback_url,
        batch_wait=options.batch_wait,
    )

    async def send(payloads: Iterator[Payload]) -> SendStats:
        stats = tally.send_stats()
        if options.via == "batch":
            return await send_batches(
                client, payloads, feed.record, sending, reconciler, stop=stop,
                on_batch=feed.batch_sent, stats=stats,
            )  # fmt: skip
        return await send_all(
            client, payloads, feed.record, sending, reconciler, stop=stop, stats=stats
        )

    began = time.monotonic()
    stats = [await send(feed.payloads())]
    if feed.later and not stop.is_set() and stats[0].session_ended is None:
        try:
            await feed.read_befores(client)
        except IvvyError as exc:
            feed.fail_later(
                f"not updated: the task's current values could not be read ({exc}), and an "
                "update is only made when undo can put them back; run again to send it"
            )
        else:
            stats.append(await send(feed.later_payloads()))
    feed.release()
    summary.send_seconds = time.monotonic() - began
    summary.rate_limited = sum(s.rate_limited for s in stats)
    ended = next((s.session_ended for s in stats if s.session_ended is not None), None)
    if ended is not None:
        summary.session_ended = ended.full_message
        summary.warnings.append(
            f"iVvy ended the session ({ended.full_message}): the run stopped at once; the rows "
            "not sent are skipped. Check the API key, then --resume"
        )


def refuse_their_tasks(
    prepared: Prepared, known: Known, options: RunOptions, target: str
) -> str | None:
    """UsageError when rows give task ids of unknown origin (:func:`unknown_ids`) and the user
    did not say they may update those tasks; when they said so, a note saying how many."""
    unknown = unknown_ids(prepared, known)
    if unknown.rows and not prepared.may_update_theirs(options):
        raise UsageError(unknown.refusal(prepared.id_column, target))
    if not unknown.rows:
        return None
    told = "--update-existing" if options.update_existing else "the mapping file"
    return (
        f"column {prepared.id_column!r} gives {unknown.rows} rows the id of a task they update "
        f"although the id does not come from this tool ({told} says they may); "
        f"{unknown.rows - unknown.ours} of those tasks were not made by this tool"
    )


@dataclass(frozen=True)
class UnknownIds:
    """Rows whose task id does not come from this tool: how many, how many of those name a
    task this tool made all the same (from other rows), and a few of the ids."""

    rows: int
    ours: int
    sample: tuple[int, ...]
    results_sheet: bool

    def refusal(self, column: str | None, target: str) -> str:
        ids = ", ".join(map(str, self.sample)) + ("…" if self.rows > len(self.sample) else "")
        why = (
            "ids this tool did not write for this target in its results"
            if self.results_sheet
            else "ids of unknown origin: this source is not a results sheet this tool wrote"
        )
        return (
            f"column {column!r} gives {self.rows} rows a task id ({ids}), {why}. A run would "
            f"overwrite those tasks in {target} ({self.ours} of them made by this tool from "
            f"other rows, {self.rows - self.ours} not made by it). If the column holds another "
            f'system\'s ids, give --key {column!r} (or map it to "ignore" in a --mapping '
            "file); to update those iVvy tasks on purpose, give --update-existing (or map the "
            'column to "id" in a --mapping file). Nothing was sent'
        )


def unknown_ids(prepared: Prepared, known: Known) -> UnknownIds:
    """The rows whose task id does not come from this tool: any in a column of the source's own
    (a legacy id, a hand-typed one); in a results sheet of ours, those of a run into another
    target (their reference unknown here) or naming a task this journal does not know."""
    if not prepared.task_rows:
        return UnknownIds(0, 0, (), prepared.earlier is not None)
    ours = known.tasks({task for _, task in prepared.task_rows})
    trusted: dict[str, bool] = {}
    unknown: Counter[int] = Counter()
    for (ref, task), n in prepared.task_rows.items():
        if prepared.earlier is not None:
            if ref not in trusted:
                trusted[ref] = not ref or known.run_by_ref(ref) is not None
            if trusted[ref] and task in ours:
                continue
        unknown[task] += n
    made = sum(n for task, n in unknown.items() if task in ours)
    sample = tuple(sorted(unknown)[:5])
    return UnknownIds(sum(unknown.values()), made, sample, prepared.earlier is not None)


def _with_key(
    prepared: Prepared, known: Known, options: RunOptions, warnings: list[str]
) -> RunOptions:
    """``options``, with the key of the run whose results sheet this is when none is given:
    its rows are matched by that column as they were then."""
    if options.key is not None or not prepared.refs:
        return options
    columns = set()
    for ref in prepared.refs:
        record = known.run_by_ref(ref)
        if record is not None:
            columns.add(record.options.get("key"))
    column = columns.pop() if len(columns) == 1 else None
    if column is None or column not in prepared.data_headers:
        return options
    warnings.append(f"rows are matched by column {column!r}, the --key of the run they came from")
    return dataclasses.replace(options, key=column)


def _spooled(
    checked: Iterator[tuple[Row, Payload | Outcome]],
) -> tuple[Iterator[tuple[Row, Payload | Outcome]], int]:
    """Every checked row, held in a temporary file (not in memory), and how many are invalid:
    ``--all-or-nothing`` must see them all before it sends any."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the replay)
    invalid = 0
    for item in checked:
        invalid += isinstance(item[1], Outcome)
        pickle.dump(item, spool, protocol=pickle.HIGHEST_PROTOCOL)
    spool.seek(0)

    def replay() -> Iterator[tuple[Row, Payload | Outcome]]:
        with spool:
            while True:
                try:
                    yield pickle.load(spool)
                except EOFError:
                    return

    return replay(), invalid


def _merged(
    rows: Iterator[Row], outcomes: Iterator[tuple[int, Outcome | None]]
) -> Iterator[tuple[Row, Outcome]]:
    """Each source row with its outcome from the journal (both in row order): a row in flight
    when the run stopped is ``failed`` (``INTERRUPTED``: it may or may not be in iVvy), a row
    the run never reached is ``skipped``."""
    never = Outcome("skipped", message="not sent: the run was stopped before this row; "
                    "--resume goes on")  # fmt: skip
    unknown = Outcome(
        "failed",
        error_code=INTERRUPTED,
        message="the run stopped while this row was being sent: it may or may not be in iVvy; "
        "--resume looks it up before sending it again",
    )
    pending = next(outcomes, None)
    for row in rows:
        while pending is not None and pending[0] < row.number:
            pending = next(outcomes, None)
        if pending is not None and pending[0] == row.number:
            yield row, pending[1] or unknown
        else:
            yield row, never


def _summary(
    prepared: Prepared, options: RunOptions, client: IvvyClient | None, kind: str = "results"
) -> tuple[RunSummary, Path]:
    """A run's summary as it begins, and where its results go (``NAME.{kind}.xlsx|csv`` by
    default)."""
    results = options.results or default_results_path(
        prepared.source.path, kind, numbered=prepared.earlier is not None and kind == "results"
    )
    check_results_path(results, prepared.source.path)
    target = client.credentials.target if client else "offline (no credentials)"
    summary = RunSummary(
        source=prepared.source.path,
        results=results,
        target=target,
        warnings=list(prepared.warnings),
    )
    return summary, results


def _finish(
    summary: RunSummary,
    outcomes: Iterable[tuple[Row, Outcome]],
    prepared: Prepared,
    results: Path,
    clock: float,
    place: Callable[[Row], tuple[int, str]] | None = None,
) -> RunSummary:
    """Write the results (every row, in source order, with its ``place``: see
    :meth:`Lineage.cells`) and complete the summary."""
    counts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    with open_results(results, prepared.data_headers) as sheet:
        for row, outcome in outcomes:
            counts[outcome.result] += 1
            if outcome.error_code is not None:
                codes[str(outcome.error_code)] += 1
            sheet.add(row, outcome, place(row) if place is not None else None)
        summary.counts, summary.codes = counts, codes
        summary.seconds = time.monotonic() - clock
        sheet.close(summary.sheet_lines(), codes)
    return summary


async def validate_source(
    source_path: str | Path,
    client: IvvyClient | None,
    options: RunOptions = RunOptions(),
    *,
    target: str | None = None,
    numbers: Collection[int] | None = None,
    on_verdict: Callable[[Row, Outcome, str], None] | None = None,
) -> RunSummary:
    """Every check of a run, online ones when a ``client`` is given, and nothing sent to
    addOrUpdateTask: a results sheet whose ``result`` is ``valid`` or ``invalid``, and the plan
    (what a run into the target, ``client``'s else ``target``, would do with each row: create,
    update a task this tool made, update one it did not make, leave unchanged), from the
    journal. Rows that would update tasks this tool did not make, unless the user said they
    may, make the summary a refusal (exit 2), as the run would be.

    With ``numbers``, only the rows of those numbers are checked, planned and written (a
    re-check after a correction); the source is still read whole, so what is decided from
    every row (the date order, the ids of unknown origin, the plan's refusal) is as a full
    check decides it. ``on_verdict`` is given each row, its verdict and its plan's verb."""
    clock = time.monotonic()
    prepared, directory = await prepare_online(source_path, client, options)
    summary, results_path = _summary(prepared, options, client, "validation")
    if directory is None:
        summary.warnings.append(
            "offline: ids, users and venues were not checked against iVvy (set IVVY_API_KEY "
            "and IVVY_API_SECRET, or give --sandbox)"
        )
    target = client.credentials.target if client is not None else target
    db = read_only_journal(options.state or default_journal_path(target)) if target else None
    if target is None:
        summary.warnings.append(
            "no target (no credentials): the plan counts every row without a task id as a "
            "create, and every task id as a task this tool did not make"
        )
    try:
        known = Known(db, target or "")
        options = _with_key(prepared, known, options, summary.warnings)
        unknown = unknown_ids(prepared, known)
        if unknown.rows and not prepared.may_update_theirs(options):
            summary.refusal = unknown.refusal(prepared.id_column, target or "the target")
        origin = fingerprint(prepared.source.path, prepared.source.sheet)
        if (latest := known.latest_import(origin)) is not None:
            record, counts = latest
            done = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
            summary.previous = (
                f"this file was imported into {target} on {record.finished or record.started} "
                f"(run {record.id}: {done}): a run now leaves its rows unchanged, or updates "
                "those that changed; it creates none of them again"
            )
            summary.warnings.append(summary.previous)
        lineage = Lineage(known, prepared, origin, "")
        planner = Planner(known, lineage, options.key)
        checked_all = checked_rows(
            prepared, directory, default_venue=options.venue_id, key=options.key,
            only=options.only, numbers=numbers,
        )  # fmt: skip
        summary.rules = prepared.rules
        verdicts = _planned(planner, checked_all, summary.plan, on_verdict)
        return _finish(summary, verdicts, prepared, results_path, clock, lineage.cells)
    finally:
        if db is not None:
            db.close()


#: The plan's name for rows of a results sheet that ``--only`` did not pick.
KEPT = "kept (not picked by --only)"


def _planned(
    planner: Planner,
    checked: Iterator[tuple[Row, Payload | Outcome]],
    plan: Counter[str],
    on_verdict: Callable[[Row, Outcome, str], None] | None = None,
) -> Iterator[tuple[Row, Outcome]]:
    """Each row's verdict for ``validate``: valid (its message the plan), or why not; the plan
    counted in ``plan`` (and each row given to ``on_verdict`` with its verb)."""
    group: list[tuple[Row, Payload | Outcome]] = []

    def verdicts() -> Iterator[tuple[Row, Outcome]]:
        for decision in planner.decide(group):
            checked = decision.checked
            if decision.verb == INVALID:
                assert isinstance(checked, Outcome)
                verb, verdict = INVALID if checked.result == "invalid" else KEPT, checked
            else:
                verb = decision.verb
                verdict = Outcome("valid", message=message_of(decision), warnings=checked.warnings)
            plan[verb] += 1
            if on_verdict is not None:
                on_verdict(decision.row, verdict, verb)
            yield decision.row, verdict

    for item in checked:
        group.append(item)
        if len(group) >= Feed.GROUP:
            yield from verdicts()
            group = []
    yield from verdicts()
