"""Preparing a source: read it, map its columns, and make one pass over it (the date order of
the due column, the ids the rows refer to, the row count) before anything is sent."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from .client import IvvyClient
from .dates import DateEvidence, DateRules, zone_named
from .directory import Directory, Needed
from .errors import UsageError
from .map import ColumnMapping, MappingFile, given_columns, load_mapping_file, map_columns
from .model import Email
from .normalise import CellError, Normalised, Normaliser, to_id_or_email, to_integer
from .options import DEFAULTS, VENUE_ZONE, RunOptions, parse_clock
from .read import Batch, RowCache, Source, is_blank, open_source
from .results import (
    earlier_columns,
    unneutralise,
)


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
    #: The rows as the first pass normalised them, when it was asked to (see :class:`Early`).
    early: Early | None = None

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
        return normaliser_of(self.source, self.mapping, self.rules)


def normaliser_of(source: Source, mapping: ColumnMapping, rules: DateRules) -> Normaliser:
    """The normaliser of ``source``'s rows: the one a check makes, and the first pass's too
    (:class:`Early`), so that the two make the same of each row."""
    return Normaliser(mapping, rules, source.headers, text_only=source.kind == "text")


class Early:
    """A kept workbook's batches normalised during the first pass, while the reader's child
    still writes the next ones (for a check of every row, which would normalise them next):
    made with the date rules known before the pass, so good only for a pass with the same
    rules (the pass may find the date order). :meth:`batches` gives each once, and lets it go."""

    def __init__(self, normaliser: Normaliser) -> None:
        self.normaliser = normaliser
        self._made: list[Normalised] = []

    def __call__(self, batch: Batch) -> None:
        self._made.append(self.normaliser.batch(batch))

    def batches(self, rules: DateRules) -> Iterator[Normalised] | None:
        """The batches normalised, in order, if they were made with ``rules``; else None (and
        they are let go)."""
        made, self._made = self._made, []
        if self.normaliser.rules != rules:
            return None
        made.reverse()
        return (made.pop() for _ in range(len(made)))


#: The kind of record each id field refers to.
ID_KINDS = {
    "id": "task",
    "leadId": "lead",
    "contactId": "contact",
    "companyId": "company",
    "venueId": "venue",
    "assignedUserId": "user",
}


@dataclass(frozen=True)
class _Facts:
    """What a full pass found, kept in a row cache: for the columns ``watched`` (see
    :meth:`FirstPass.watched`) and the corrections ``patches`` of that pass."""

    watched: tuple[int | None, ...]
    patches: dict[int, dict[int, Any]]
    count: int
    notes: list[str]
    first: FirstPass


def _copied(patches: dict[int, dict[int, Any]]) -> dict[int, dict[int, Any]]:
    return {number: dict(cells) for number, cells in patches.items()}


_NONE = object()


def _reusable(
    cache: RowCache | None, source: Source, watched: tuple[int | None, ...]
) -> _Facts | None:
    """The facts of the cache's full pass, if they hold for ``source`` as it reads now: the
    same file read the same way, the same columns watched, and every watched cell corrected
    as it was then (a correction elsewhere changes nothing a full pass finds but the ids to
    look up, which a check of a few rows finds again from them)."""
    if cache is None or not cache.holds(source):
        return None
    facts = cache.facts
    if not isinstance(facts, _Facts) or facts.watched != watched:
        return None
    now, then = source.patches, facts.patches
    positions = [p for p in watched if p is not None]
    for number in now.keys() | then.keys():
        mine, theirs = now.get(number, {}), then.get(number, {})
        if any(mine.get(p, _NONE) != theirs.get(p, _NONE) for p in positions):
            return None
    return facts


class FirstPass:
    """What the first pass learns: the due column's date order, and the distinct ids and
    e-mails each id column refers to (each distinct cell converted once)."""

    def __init__(
        self,
        headers: list[str],
        mapping: ColumnMapping,
        ref_column: str | None = None,
        early: Early | None = None,
    ) -> None:
        self.evidence = DateEvidence()
        self._early = early
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

    @staticmethod
    def watched(
        headers: list[str], mapping: ColumnMapping, ref_column: str | None = None
    ) -> tuple[int | None, ...]:
        """The positions of the columns whose every cell a pass's findings depend on, beyond
        the ids to look up: the due date (the date order), the task id and the run reference
        (the tasks the rows would update)."""
        columns = (mapping.columns.get("endDatetime"), mapping.columns.get("id"), ref_column)
        return tuple(headers.index(c) if c in headers else None for c in columns)

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
        if self._early is not None:
            self._early(batch)


def _option(options: RunOptions, mapping: ColumnMapping, name: str) -> Any:
    given = getattr(options.dates, name)
    return given if given is not None else mapping.options.get(name)


def open_mapped(
    source_path: str | Path, options: RunOptions, *, require: bool = True
) -> tuple[Source, dict[str, str] | None, ColumnMapping]:
    """The source opened (corrections applied as it is read, a results sheet's cells given
    back as written), whether it is a results sheet (our columns by name), and its mapping.
    ``require=False`` maps even while a field every create needs has no column (a page showing
    what is mapped so far)."""
    mapping_file = (
        options.source.mapping
        if isinstance(options.source.mapping, MappingFile) or options.source.mapping is None
        else load_mapping_file(options.source.mapping)
    )
    if options.source.columns:
        mapping_file = given_columns(options.source.columns, mapping_file)
    sheet = options.source.sheet or (mapping_file.options.get("sheet") if mapping_file else None)
    source = open_source(source_path, sheet=sheet, encoding=options.source.encoding,
                         header_row=options.source.header_row)  # fmt: skip
    earlier = earlier_columns(source.headers)
    if earlier is not None:
        source = source.reading(cell_filter=unneutralise)
    elif options.only is not None:
        raise UsageError(
            f"--only picks rows of a results sheet by their result; {source.path} is not a "
            "results sheet (it has no 'result' and 'task_id' columns at its end)"
        )
    headers = source.headers[: -len(earlier)] if earlier else source.headers
    patches: dict[int, dict[int, Any]] = {}
    for (number, column), value in (options.source.fixes or {}).items():
        if column not in source.headers:
            raise UsageError(f"a correction names column {column!r}, which the source lacks")
        patches.setdefault(number, {})[source.headers.index(column)] = value
    if patches:
        source = source.reading(patches=patches)
    mapping = map_columns(
        headers,
        path=source.path,
        sheet=source.sheet,
        profile=options.source.profile,
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
    source_path: str | Path,
    options: RunOptions = DEFAULTS,
    *,
    venue_zone: str | None = None,
    numbers: Collection[int] | None = None,
    early: bool = False,
) -> Prepared:
    """Open and map the source, then pass over every row once.

    Raises :class:`~importer.errors.SourceError` when any row cannot be read and
    :class:`~importer.errors.UsageError` for a bad option or mapping file: either way before
    anything is sent. ``venue_zone`` is the zone of ``--venue-id``, looked up by the caller when
    ``--timezone venue`` is asked for.

    With ``numbers`` (a check of those rows alone) and a ``row_cache`` that holds this source
    from a full pass with the same mapping, what that pass found is reused and only those rows
    are read, while the cells it depends on (the due dates, the task ids, the run references)
    read as they did then; else every row is passed over again.

    ``early``: a workbook whose rows the pass keeps is normalised during the pass too (see
    :class:`Early`), for a check of every row that follows it.
    """
    source, earlier, mapping = open_mapped(source_path, options)
    if options.key is not None and options.key not in source.headers:
        raise UsageError(
            f"--key {options.key!r}: no such column; the columns are: "
            + ", ".join(repr(h) for h in source.headers)
        )
    rules = date_rules(options, mapping, source, venue_zone)
    zone_note = profile_zone_note(options, mapping)
    key_column = f"column {options.key!r} is not imported"
    warnings = [*source.notes, *(w for w in mapping.warnings if not w.startswith(key_column))]

    if zone_note:
        warnings.append(zone_note)
    ref_column = earlier.get("run_ref") if earlier else None
    cache = options.source.row_cache
    source.cache = cache
    made: Early | None = None
    watched = FirstPass.watched(source.headers, mapping, ref_column)
    facts = _reusable(cache, source, watched) if numbers is not None else None
    if facts is not None:
        count, notes, found = facts.count, facts.notes, facts.first
        # The ids to look up are those of the rows checked now (the others are not checked).
        fresh = FirstPass(source.headers, mapping, ref_column)
        for batch in source.batches(numbers=numbers):
            fresh(batch)
        first = copy.copy(found)
        first.needed = fresh.needed
        source.notes[:] = [*source.notes, *(n for n in notes if n not in source.notes)]
    else:
        # (Kept rows are a workbook's, whose pass never starts again: a text file's may.)
        if early and numbers is None and source.keeps_rows():
            made = Early(normaliser_of(source, mapping, rules))
        count, seen = source.scan(lambda: FirstPass(source.headers, mapping, ref_column, made))
        first = seen or FirstPass(source.headers, mapping, ref_column)
        first._early = None  # (the batches go with Prepared, never into a row cache's facts)
        if cache is not None and cache.holds(source):
            kept = copy.copy(first)
            kept.needed = Needed()  # (each check looks up its own rows' ids)
            cache.facts = _Facts(watched, _copied(source.patches), count, list(source.notes),
                                 kept)  # fmt: skip
    # What reading every row found (text after a closing quote…), after what opening found.
    warnings = [*source.notes, *(w for w in warnings if w not in source.notes)]
    evidence = first.evidence
    due_column = mapping.columns.get("endDatetime")
    if options.venue_id is not None:
        first.needed.ids["venue"].add(options.venue_id)
    if rules.order is None:
        rules = dataclasses.replace(rules, order=evidence.order())
        if conflict := evidence.conflict():
            warnings.append(f"column {due_column!r}: {conflict}")
    if due_column and (serials := evidence.serial_note(due_column, source.date1904)):
        warnings.append(serials)
    if mapping.suggested_key and options.key != mapping.suggested_key:
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
        early=made,
    )


def date_rules(
    options: RunOptions, mapping: ColumnMapping, source: Source, venue_zone: str | None
) -> DateRules:
    """How to read the sheet's dates, from the options, the mapping file and the profile."""
    zone_name = (
        _option(options, mapping, "timezone")
        or mapping.timezone
        or options.dates.default_timezone
        or "UTC"
    )
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


def profile_zone_note(options: RunOptions, mapping: ColumnMapping) -> str | None:
    """What to say when a profile's zone and a zone given disagree: which one the times are
    read in, and why."""
    known = mapping.timezone
    if known is None:
        return None
    name = options.source.profile or "the profile"
    given = _option(options, mapping, "timezone")
    if given is not None and str(given) != known:
        return (
            f"the times are read in {given}, as given, although --profile {name} exports them "
            f"in {known}: check a few tasks' due times"
        )
    default = options.dates.default_timezone
    if given is None and default is not None and default != known:
        return (
            f"the times are read in {known}, the zone --profile {name} exports them in, not in "
            f"the default zone {default} (give --timezone to choose another)"
        )
    return None


async def prepare_online(
    source_path: str | Path,
    client: IvvyClient | None,
    options: RunOptions,
    *,
    numbers: Collection[int] | None = None,
    early: bool = False,
) -> tuple[Prepared, Directory | None]:
    """The source prepared (:func:`prepare`) and, with a ``client``, the account's records its
    rows refer to, fetched once. The source is read before anything is asked of iVvy (a bad
    source is a usage error whatever the network), except when ``--timezone venue`` needs the
    venue's zone first; the credentials are checked (``ping``) before any other call.
    ``early`` is :func:`prepare`'s, offline (online checks go row by row)."""
    wants_venue_zone = str(options.dates.timezone or "").lower() == VENUE_ZONE
    if wants_venue_zone and (client is None or options.venue_id is None):
        raise UsageError("--timezone venue needs --venue-id and a connection to iVvy")
    if client is None:
        return prepare(source_path, options, numbers=numbers, early=early), None
    prepared = None if wants_venue_zone else prepare(source_path, options, numbers=numbers)
    await client.measure_clock()
    if prepared is None:
        zone = await venue_timezone(client, options.venue_id)  # type: ignore[arg-type]
        prepared = prepare(source_path, options, venue_zone=zone, numbers=numbers)
    directory = Directory(client)
    await directory.load(prepared.needed)
    return prepared, directory


async def venue_timezone(client: IvvyClient, venue_id: int) -> str:
    """The IANA zone of venue ``venue_id`` (from getVenueList, matched locally)."""
    async for venue in client.iter_collection("venue", "getVenueList"):
        if str(venue.get("id")) == str(venue_id):
            zone = venue.get("timezone")
            if not zone:
                raise UsageError(f"venue {venue_id} has no time zone in iVvy: give --timezone")
            return str(zone)
    raise UsageError(f"venue {venue_id} does not exist in iVvy: check --venue-id")
