"""Rows gone from a nightly export: the keys an earlier keyed run imported that this source no
longer holds, told of in the results (``missing``) or their tasks set to Cancelled
(``cancelled``), unless the source looks broken (empty, or much shorter than the last run's).

And the check every update of a known task passes first: a task changed in iVvy since this tool
last wrote it is not overwritten (``conflict``) unless told so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .client import IvvyClient
from .directory import tasks_among
from .fields import EDITED_IN_IVVY
from .journal import Journal, Known
from .model import Outcome, Payload, Row
from .options import RunOptions
from .reconcile import same_value
from .send import send_all
from .summary import RunSummary

CANCELLED = 3

#: The slack allowed between the time this tool wrote a task and the ``modifiedDate`` iVvy
#: gives it (the two clocks, once the measured offset is taken off, and the write's own time).
EDIT_SLACK = 2.0


def stamp(value: Any) -> datetime | None:
    """A timestamp as getTaskList gives it (``YYYY-MM-DD HH:MM:SS UTC``), or ``None``."""
    try:
        moment = datetime.strptime(str(value).removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def edited_since(task: Mapping[str, Any], written: float | None, offset: float) -> bool:
    """Whether iVvy's ``task`` was changed after this tool last wrote it at ``written`` (its own
    clock; ``offset``: how far iVvy's clock is ahead). Unknown either way: not edited."""
    modified = stamp(task.get("modifiedDate"))
    if modified is None or written is None:
        return False
    return modified.timestamp() > written + offset + EDIT_SLACK


def differing(task: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The fields among ``params`` whose value in iVvy's ``task`` is not the one ``params``
    sends, each as ``name (iVvy: …, this row: …)``."""
    return [
        f"{name} (iVvy: {task.get(name)!r}, this row: {value!r})"
        for name, value in params.items()
        if name != "id" and not same_value(task, name, value)
    ]


def conflict(task_id: int, task: Mapping[str, Any], params: Mapping[str, Any]) -> Outcome:
    """The outcome of an update not sent: its task was changed in iVvy since this tool last
    wrote it."""
    fields = differing(task, params)
    what = "; ".join(fields) if fields else "none of the row's fields differ from iVvy's now"
    return Outcome(
        "conflict",
        task_id=task_id,
        error_code=EDITED_IN_IVVY,
        message=f"task {task_id} was changed in iVvy on {task.get('modifiedDate')}, after this "
        f"tool last wrote it: not sent, so that edit stays. Fields that differ: {what}. Give "
        "--overwrite-edits to send the row anyway",
    )


@dataclass(frozen=True)
class Vanished:
    """A key an earlier run imported that this source does not hold, and its task."""

    key: str
    task_id: int
    run: int


def baseline(journal: Journal, target: str, column: str, run_id: int) -> tuple[int, int] | None:
    """``(run, rows)`` of the last keyed run before ``run_id`` whose source did not look
    broken: what a new source's row count is compared with."""
    for record in journal.keyed_runs(target, column, before=run_id):
        if record.options.get("missing_refused"):
            continue
        rows = record.options.get("rows")
        if rows is None:
            rows = sum(journal.row_counts(record.id).values()) or None
        if rows:
            return record.id, int(rows)
    return None


def broken_source(rows: int, before: tuple[int, int] | None, max_shrink: float) -> str | None:
    """Why a source of ``rows`` rows looks broken, or ``None``."""
    if rows == 0:
        return "the source holds no rows (a broken or empty export?)"
    if before is not None and rows < before[1] * (1 - max_shrink):
        run, had = before
        return (
            f"the source holds {rows} rows, {1 - rows / had:.0%} fewer than run {run}'s {had}, "
            f"more than --max-shrink {max_shrink:.0%} allows (a broken or partial export?)"
        )
    return None


async def settle_missing(
    client: IvvyClient,
    journal: Journal,
    known: Known,
    run_id: int,
    rows: int,
    present: set[str],
    options: RunOptions,
    summary: RunSummary,
) -> list[tuple[Row, Outcome]]:
    """The lines a keyed run adds to its results for the keys gone from its source: each
    ``missing`` (``--missing report``), or with ``--missing cancel`` its task set to Cancelled
    (``cancelled``; a task changed in iVvy since this tool wrote it is left, ``conflict``),
    unless the source looks broken: then nothing is cancelled and the run ends with exit 1."""
    column = options.key
    assert column is not None
    target = client.credentials.target
    gone = [Vanished(*found) for found in known.vanished(column, present)]
    before = baseline(journal, target, column, run_id)
    why = broken_source(rows, before, options.max_shrink)
    if why is not None:
        summary.missing_refused = (
            f"{why}: the {len(gone)} keys of earlier runs it lacks were not cancelled; check "
            "the export, or raise --max-shrink if it really shrank"
        )
        journal.note(run_id, missing_refused=True)
        if not gone:
            summary.missing_refused = None
    journal.note(run_id, rows=rows)
    if not gone:
        return []
    if options.missing == "report" or why is not None:
        how = (
            "not cancelled: " + why
            if why is not None
            else "its task was left as it is (--missing cancel sets it to Cancelled)"
        )
        return [
            (_line(column, v), Outcome("missing", task_id=v.task_id, message=_was(v, column) + how))
            for v in gone
        ]
    return await _cancel(client, journal, known, gone, column, run_id, options)


def _line(column: str, vanished: Vanished) -> Row:
    """A results line of no source row (its ``row`` cell is blank): only the key."""
    return Row(0, {column: vanished.key})


def _was(vanished: Vanished, column: str) -> str:
    return (
        f"{column} {vanished.key!r} was in an earlier export (run {vanished.run}) and is not in "
        f"this one; "
    )


async def _cancel(
    client: IvvyClient,
    journal: Journal,
    known: Known,
    gone: list[Vanished],
    column: str,
    run_id: int,
    options: RunOptions,
) -> list[tuple[Row, Outcome]]:
    """Each vanished key's task set to Cancelled (status 3), read first: a task no longer in
    iVvy, or already Cancelled, is not sent; one changed in iVvy since this tool last wrote it
    is left (``conflict``) unless ``--overwrite-edits``."""
    ids = [v.task_id for v in gone]
    current = await tasks_among(client, ids)
    written = known.written(ids)
    done: dict[str, Outcome] = {}
    payloads: list[Payload] = []
    for v in gone:
        task = current.get(v.task_id)
        intro = _was(v, column)
        if task is None:
            message = intro + f"its task {v.task_id} is no longer in iVvy: nothing to cancel"
            done[v.key] = Outcome("missing", task_id=v.task_id, message=message)
        elif same_value(task, "status", CANCELLED):
            message = intro + "its task was already Cancelled"
            done[v.key] = Outcome("cancelled", task_id=v.task_id, message=message)
        elif not options.overwrite_edits and edited_since(
            task, written.get(v.task_id), client.measured_offset
        ):
            edited = conflict(v.task_id, task, {"status": CANCELLED})
            done[v.key] = Outcome(
                "conflict",
                task_id=v.task_id,
                error_code=edited.error_code,
                message=intro + "not cancelled: " + edited.message,
            )
        else:
            params = {"id": v.task_id, "status": CANCELLED}
            payloads.append(Payload(_line(column, v), params))

    by_key = {v.key: v for v in gone}

    def heard(payload: Payload, outcome: Outcome) -> None:
        key = str(payload.row.cells[column])
        if outcome.result == "updated":
            message = _was(by_key[key], column)
            outcome = Outcome("cancelled", task_id=outcome.task_id, message=message + "its task "
                              "was set to Cancelled")  # fmt: skip
        done[key] = outcome

    if payloads:
        await send_all(client, payloads, heard, options.send, stop=asyncio.Event())
    was = {v.key: whole_number((current.get(v.task_id) or {}).get("status"), zero=True)
           for v in gone}  # fmt: skip
    journal.gone(
        client.credentials.target,
        column,
        [(key, was[key]) for key, outcome in done.items() if outcome.result == "cancelled"],
        run_id,
    )
    return [(_line(column, v), done[v.key]) for v in gone]


def whole_number(value: Any, *, zero: bool = False) -> int | None:
    """An id or a status as iVvy lists it, as a number (an id of 0 is none; ``zero``: a
    status of 0 is one)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number or zero else None


def present_keys(rows: Iterable[tuple[Row, Any]], column: str, into: set[str]) -> Any:
    """``rows`` passed on, each row's key (any row, valid or not: a row there is not gone)
    added to ``into``."""
    from .check import key_of

    for row, checked in rows:
        value = key_of(row, column)
        if value:
            into.add(value)
        yield row, checked
