"""The public API: run, validate, undo and inspect, each a call (and an ``_async`` twin).

The command line and the page are callers of these; what they add is their own policy (the
results sheet beside the source, progress bars, pages). Here a results sheet is written where
``options.results`` says, and nowhere a caller did not ask for: without it, the results live in
a private temporary folder for as long as the summary does, for :meth:`RunSummary.rows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any, Literal, TypeVar

from .client import Credentials, IvvyClient
from .errors import UsageError
from .journal import state_of
from .map import MappingFile
from .model import Outcome, RowResult
from .options import BESIDE, DEFAULTS, RunOptions
from .pipeline import run_import, validate_source
from .prepare import open_mapped
from .progress import OnEvent
from .results import RESULT_COLUMNS, read_back, unneutralise, whole
from .summary import RunSummary
from .undo import undo_run

T = TypeVar("T")


@dataclass(frozen=True)
class Table:
    """A table given in memory instead of a file: its column names and its rows (each a
    sequence of cells in the order of ``headers``). ``name`` is what the results and the
    journal know it by: the same table under the same name is the same source (a second run
    of it creates nothing again)."""

    headers: Sequence[str]
    rows: Iterable[Sequence[Any]]
    name: str = "table"


Source = str | os.PathLike[str] | Table | Any  # Any: a pandas DataFrame


@dataclass(frozen=True)
class Inspection:
    """What the importer makes of a source before anything is sent: its headers, the field each
    column feeds and how sure that is, the warnings, the number of data rows, and the plan (what
    a run into ``target`` would do with each row, from its journal), or why it would refuse."""

    headers: list[str]
    columns: dict[str, str]
    how: dict[str, str]
    warnings: list[str]
    rows: int
    plan: dict[str, int]
    refusal: str | None


def run(
    source: Source,
    *,
    credentials: Credentials | None = None,
    client: IvvyClient | None = None,
    options: RunOptions = DEFAULTS,
    mapping: str | os.PathLike[str] | MappingFile | None = None,
    on_event: OnEvent | None = None,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """Import every row of ``source`` (a file's path, a :class:`Table`, or a pandas DataFrame)
    into iVvy: the run's summary. ``credentials`` default to the environment (``IVVY_API_KEY``,
    ``IVVY_API_SECRET``, ``IVVY_BASE_URL`` or ``IVVY_REGION``); a ``client`` given is used as
    it is. ``on_event`` hears how the run goes; setting ``stop`` stops it (rows not sent stay
    for ``options.resume``). Every row is checked before any is sent; a row that already has a
    task in this target (the journal says) is never created again.

    Raises :class:`~importer.errors.ImporterError` before anything is sent when the source,
    the mapping, an option or the journal is unusable, and
    :class:`~importer.client.IvvyError` when iVvy cannot be reached or refuses the
    credentials. Rows that fail do not raise: see :meth:`RunSummary.raise_for_failures`."""
    return _sync(run_async(source, credentials=credentials, client=client, options=options,
                           mapping=mapping, on_event=on_event, stop=stop))  # fmt: skip


async def run_async(
    source: Source,
    *,
    credentials: Credentials | None = None,
    client: IvvyClient | None = None,
    options: RunOptions = DEFAULTS,
    mapping: str | os.PathLike[str] | MappingFile | None = None,
    on_event: OnEvent | None = None,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """:func:`run`, awaited."""
    async with (
        _prepared(source, options, mapping, "results") as (path, opts, keep),
        _client(credentials, client, opts.send.concurrency) as ivvy,
    ):
        summary = await run_import(path, ivvy, opts, stop=stop, on_event=on_event)
    return _kept(summary, keep, private=options.results is None)


def validate(
    source: Source,
    *,
    credentials: Credentials | None = None,
    client: IvvyClient | None = None,
    options: RunOptions = DEFAULTS,
    mapping: str | os.PathLike[str] | MappingFile | None = None,
    offline: bool = False,
    target: str | None = None,
    rows: Collection[int] | None = None,
) -> RunSummary:
    """Every check a run makes, and nothing sent: each row ``valid`` or ``invalid``, and the
    plan (create, update, unchanged…) in ``summary.plan``. ``offline``: without iVvy (no ids
    looked up; the plan is that of ``target``'s journal, as ``Credentials.target`` names it,
    when given). ``rows``: check only the rows of those numbers (after a correction, say),
    what is decided from every row decided as a check of every row decides it; give the same
    ``RunOptions(row_cache=RowCache())`` to the check of every row and to these, and they read
    the rows from memory instead of the file."""
    return _sync(validate_async(source, credentials=credentials, client=client, options=options,
                                mapping=mapping, offline=offline, target=target,
                                rows=rows))  # fmt: skip


async def validate_async(
    source: Source,
    *,
    credentials: Credentials | None = None,
    client: IvvyClient | None = None,
    options: RunOptions = DEFAULTS,
    mapping: str | os.PathLike[str] | MappingFile | None = None,
    offline: bool = False,
    target: str | None = None,
    rows: Collection[int] | None = None,
) -> RunSummary:
    """:func:`validate`, awaited."""
    numbers = None if rows is None else frozenset(rows)
    async with _prepared(source, options, mapping, "validation") as (path, opts, keep):
        if offline:
            summary = await validate_source(path, None, opts, target=target, numbers=numbers)
        else:
            async with _client(credentials, client, opts.send.concurrency) as ivvy:
                summary = await validate_source(path, ivvy, opts, numbers=numbers)
    return _kept(summary, keep, private=options.results is None)


def undo(
    run_id: int | None = None,
    *,
    credentials: Credentials | None = None,
    client: IvvyClient | None = None,
    state: str | os.PathLike[str] | None = None,
    results: str | os.PathLike[str] | None = None,
    plan_only: bool = False,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """Undo import run ``run_id`` (default: the latest into the target): cancel the tasks it
    created, put back the tasks it updated (unless changed in iVvy since). ``plan_only``: what
    it would do, in ``summary.plan``; nothing is sent."""
    return _sync(undo_async(run_id, credentials=credentials, client=client, state=state,
                            results=results, plan_only=plan_only, stop=stop))  # fmt: skip


async def undo_async(
    run_id: int | None = None,
    *,
    credentials: Credentials | None = None,
    client: IvvyClient | None = None,
    state: str | os.PathLike[str] | None = None,
    results: str | os.PathLike[str] | None = None,
    plan_only: bool = False,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """:func:`undo`, awaited (``results="beside"``: the command line's place for them, beside
    the results of the run undone)."""
    folder = None
    where: Path | Literal["beside"] | None = (
        results if results == BESIDE else Path(results) if results is not None else None
    )
    if where is None:
        folder = Path(tempfile.mkdtemp(prefix="task-import-api-"))
        where = folder / "undo.results.csv"
    try:
        async with _client(credentials, client, 8) as ivvy:
            summary = await undo_run(ivvy, run_id, state=state_of(state),
                                     results=where, stop=stop, plan_only=plan_only)  # fmt: skip
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return _kept(summary, folder, private=folder is not None)


def inspect(
    source: Source,
    *,
    options: RunOptions = DEFAULTS,
    mapping: str | os.PathLike[str] | MappingFile | None = None,
    target: str | None = None,
) -> Inspection:
    """What the importer makes of ``source``, offline: headers, mapping and how sure each
    column's field is, warnings, row count, and the plan for ``target`` (a journal's target,
    as ``Credentials.target`` names it; without one, every row is a create)."""

    async def look() -> Inspection:
        async with _prepared(source, options, mapping, "validation") as (path, opts, keep):
            # The check makes the one pass over every row; opening the source again reads
            # only its first rows, for the mapping as the check made it.
            summary = await validate_source(path, None, opts, target=target)
            opened, earlier, mapped = open_mapped(path, opts)
            if keep is not None:
                shutil.rmtree(keep, ignore_errors=True)
        headers = opened.headers
        return Inspection(
            headers=headers[: -len(earlier)] if earlier else headers,
            columns=dict(mapped.columns),
            how=dict(mapped.how),
            warnings=list(summary.warnings),
            rows=summary.row_count,
            plan=dict(summary.plan),
            refusal=summary.refusal,
        )

    return _sync(look())


# -- helpers ----------------------------------------------------------------------------------


def _sync(work: Awaitable[T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)  # type: ignore[arg-type]
    if hasattr(work, "close"):
        work.close()  # never awaited: said so below
    raise UsageError(
        "called from inside an event loop (async code): await the _async form instead, "
        "e.g. await importer.run_async(...)"
    )


@contextlib.asynccontextmanager
async def _client(
    credentials: Credentials | None, client: IvvyClient | None, concurrency: int
) -> AsyncIterator[IvvyClient]:
    """The client given (left open), else one built from ``credentials`` or the environment,
    its connection pool sized for ``concurrency`` (closed after)."""
    if client is not None:
        yield client
        return
    async with IvvyClient(
        credentials or Credentials.from_env(), max_connections=max(8, concurrency)
    ) as built:
        yield built


@contextlib.asynccontextmanager
async def _prepared(
    source: Source,
    options: RunOptions,
    mapping: str | os.PathLike[str] | MappingFile | None,
    kind: str,
) -> AsyncIterator[tuple[Path, RunOptions, Path | None]]:
    """The source as a file, the options to run it with, and the private folder (if any)
    that holds the results the caller did not ask to keep (None: nothing private)."""
    folder: Path | None = None
    try:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
        else:
            folder = Path(tempfile.mkdtemp(prefix="task-import-api-"))
            path = _written(source, folder)
        if options.results is None:
            folder = folder or Path(tempfile.mkdtemp(prefix="task-import-api-"))
            options = options.replace(results=folder / f"{path.stem}.{kind}.csv")
        if mapping is not None:
            options = options.replace(
                mapping=mapping if isinstance(mapping, MappingFile) else Path(mapping)
            )
        yield path, options, folder
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _kept(summary: RunSummary, folder: Path | None, *, private: bool) -> RunSummary:
    """The summary as the caller sees it: its results sheet named only if asked for
    (``private``: not asked; the sheet stays in ``folder``, for :meth:`RunSummary.rows`, as
    long as the summary does)."""
    sheet = summary.results
    if sheet is not None:
        summary.rows_from(lambda: results_rows(sheet))
    if folder is not None:
        weakref.finalize(summary, shutil.rmtree, str(folder), True)
    if private:
        summary.results = None
    return summary


def results_rows(sheet: Path) -> Iterator[RowResult]:
    """The rows of a results sheet of ours, each with its cells and its outcome, streamed."""
    headers, rows = read_back(sheet)
    data = headers[: -len(RESULT_COLUMNS)]
    for cells in rows:
        number, result, task_id, code, field, message, warnings, _ = (
            whole(c) for c in cells[-len(RESULT_COLUMNS) :]
        )
        outcome = Outcome(
            result=str(result),  # type: ignore[arg-type]
            task_id=int(task_id) if not _blank(task_id) else None,
            error_code=_code(code),
            field=None if _blank(field) else str(field),
            message="" if _blank(message) else str(message),
            warnings=tuple(w for w in str(warnings or "").split("; ") if w),
        )
        values = {h: unneutralise(c) for h, c in zip(data, cells, strict=False)}
        yield RowResult(0 if _blank(number) else int(number), values, outcome)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _code(value: Any) -> int | str | None:
    if _blank(value):
        return None
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def _written(source: Any, folder: Path) -> Path:
    """A table (a :class:`Table`, a ``(headers, rows)`` pair or a pandas DataFrame) written as
    the CSV the reader reads: UTF-8, every cell as text (dates as ``YYYY-MM-DD HH:MM:SS``)."""
    if isinstance(source, Table):
        headers, rows, name = list(source.headers), source.rows, source.name
    elif isinstance(source, tuple) and len(source) == 2:
        headers, rows, name = list(source[0]), source[1], "table"
    elif hasattr(source, "columns") and hasattr(source, "itertuples"):
        headers = [str(c) for c in source.columns]
        rows, name = source.itertuples(index=False, name=None), "dataframe"
    else:
        raise UsageError(
            "source: give a file's path, an importer.Table, a (headers, rows) pair or a "
            f"pandas DataFrame, not {type(source).__name__}"
        )
    path = folder / f"{_safe(name)}.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([str(h) for h in headers])
        for cells in rows:
            writer.writerow([_text(c) for c in cells])
    return path


def _safe(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return kept or "table"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if type(value).__name__ in ("NaTType", "NAType"):
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date | clock_time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


__all__ = [
    "Inspection",
    "Table",
    "inspect",
    "results_rows",
    "run",
    "run_async",
    "undo",
    "undo_async",
    "validate",
    "validate_async",
]
