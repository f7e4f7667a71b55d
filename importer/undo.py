"""Undo an import: the API has no task delete, so every task the run created is set to Cancelled
(status 3), and every task it updated gets back the values it had before (read from iVvy and
journalled before the update was sent).

A task changed in iVvy since the run wrote it is left as it is, and the undo says so: undo puts
back only what the run changed, never a person's later work. An undo is journalled like a run
(each row in flight before it is sent, done after), so a stopped undo goes on where it stopped
when it is run again; ``plan_only`` lists what it would do and sends nothing.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from .client import IvvyClient
from .directory import tasks_among
from .errors import UsageError
from .feed import Feed
from .fields import STATUSES
from .journal import (
    Cancelled,
    Journal,
    RunJournal,
    RunRecord,
    Touched,
    is_done,
    open_journal,
)
from .missing import edited_since, whole_number
from .model import Outcome, Payload, Row
from .pipeline import settle_in_flight
from .plan import INVALID, UPDATE, Decision
from .reconcile import Reconciler, same_value
from .results import check_results_path
from .send import SendOptions, send_all
from .summary import RunSummary, write_results

CANCELLED = 3


def _chosen(journal: Journal, target: str, run_id: int | None) -> RunRecord:
    imports = [r for r in journal.runs(target) if r.kind == "import"]
    if not imports:
        raise UsageError(f"nothing to undo: no import into {target} in the journal {journal.where}")
    if run_id is None:
        run_id = imports[0].id
    chosen = next((r for r in imports if r.id == run_id), None)
    if chosen is None:
        known = ", ".join(f"{r.id} ({Path(r.source).name}, {r.started})" for r in imports[:10])
        raise UsageError(f"no import run {run_id} into {target} in {journal.where}; runs: {known}")
    if chosen.status == "pruned":
        raise UsageError(
            f"run {run_id}'s rows were pruned from the journal (task-import runs "
            "--forget-older-than): which tasks it created is no longer known"
        )
    return chosen


def undo_results_path(original: RunRecord, *, plan: bool = False) -> Path:
    base = Path(original.results or original.source)
    stem = base.name.split(".")[0]
    return base.with_name(f"{stem}.undo-{original.id}{'.plan' if plan else ''}.csv")


_IDS = ("assignedUserId", "contactId", "companyId", "leadId", "venueId")
_BREAKS = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"</?[A-Za-z][^>]*>")


async def undo_run(
    client: IvvyClient,
    run_id: int | None = None,
    *,
    state: Path | str | None = None,
    results: Path | Literal["beside"] | None = None,
    concurrency: int = 8,
    stop: asyncio.Event | None = None,
    plan_only: bool = False,
) -> RunSummary:
    """Undo import run ``run_id`` (default: the latest into this target): cancel every task it
    created, put back the values of every task it updated (unless changed in iVvy since); the
    summary, with a results sheet of every row it created or updated. ``plan_only``: what it
    would do, in the summary's plan and a sheet; nothing is sent."""
    clock = time.monotonic()
    stop = stop or asyncio.Event()
    target = client.credentials.target
    await client.measure_clock()
    with open_journal(state, target) as journal:
        reconciler = Reconciler(client)
        await settle_in_flight(journal, target, reconciler, client)
        original = _chosen(journal, target, run_id)
        mark = f"undo:{original.id}"
        earlier = journal.latest(target, mark, kind="undo")
        if earlier is not None and earlier.status == "finished":
            raise UsageError(
                f"run {original.id} was already undone on {earlier.finished}; see {earlier.results}"
            )
        if not isinstance(results, Path):
            results = undo_results_path(original, plan=plan_only)
        check_results_path(results)
        cancelled = journal.cancelled_by(target, original.id)
        wanted = journal.updated_tasks(original.id) | {c.task_id for c in cancelled}
        current = await tasks_among(client, wanted)
        actions = _Actions(original, current, client.clock_offset)
        back = [(c, _put_back(c, current, client.clock_offset, original.id)) for c in cancelled]
        summary = RunSummary(source=Path(original.source), results=results, target=target)
        summary.journal, summary.undoes = journal.where, original.id
        if plan_only:
            _write_plan(summary, journal, original, actions, back)
            summary.seconds = time.monotonic() - clock
            return summary
        if earlier is not None:
            record = journal.reopen(earlier.id, str(results))
        else:
            record = journal.start(
                kind="undo",
                target=target,
                source=original.source,
                print_=mark,
                options={"undoes": original.id},
                results=str(results),
                undoes=original.id,
            )
        run = RunJournal(journal, record)
        finished = run.done_numbers()
        touched = journal.touched(original.id)
        try:

            def rows() -> Iterator[tuple[Row, Payload | Outcome]]:
                for row in touched:
                    if not is_done(finished, row.number):
                        yield Row(row.number, {}), actions.of(row)

            feed = Feed(run, rows(), stop, _as_given, keep_befores=False)
            options = SendOptions(concurrency=concurrency)
            stats = await send_all(
                client, feed.payloads(), feed.record, options, reconciler, stop=stop
            )
            feed.release()
        finally:
            touched.close()
        journal.forget_undone(target, record.id, original.id)
        lines = await _uncancel(client, journal, target, original.id, back, concurrency, stop)
        summary.run_id = record.id
        summary.interrupted = stop.is_set()
        if stats.session_ended is not None:
            summary.session_ended = stats.session_ended.full_message
        summary.seconds = time.monotonic() - clock
        _write(summary, journal, original, run, actions, lines)
        journal.end(record.id, "stopped" if summary.interrupted else "finished")
    return summary


def _as_given(group: list[tuple[Row, Payload | Outcome]]) -> list[Decision]:
    """An undo's rows are sent as they are: each an update of a task the import made."""
    return [
        Decision(UPDATE if isinstance(c, Payload) else INVALID, row, c, "", row.number)
        for row, c in group
    ]


class _Actions:
    """What the undo does with each row the import touched: cancel a task it created, put
    back a task it updated (``current``: the updated tasks as iVvy holds them now), or leave
    a task changed since (an ``Outcome``)."""

    def __init__(
        self, original: RunRecord, current: Mapping[int, Mapping[str, Any]], offset: float
    ) -> None:
        self._original = original
        self._current = current
        self._offset = offset

    def of(self, row: Touched) -> Payload | Outcome:
        number = Row(row.number, {})
        if row.result == "created":
            return Payload(number, {"id": row.task_id, "status": CANCELLED})
        run = self._original.id
        if not row.before or row.sent is None:
            message = (
                f"run {run} updated this task and the values it replaced were not read (a run "
                "of an earlier version, or the task was not listed then): it cannot be put back"
            )
            return _left(row, message)
        now = self._current.get(row.task_id)
        if now is None:
            return _left(row, "this task is no longer in iVvy: nothing to put back")
        changed = changed_fields(now, row.sent)
        if changed:
            return _left(row, f"changed in iVvy since run {run} updated it ({', '.join(changed)} "
                         "differ from what the run set): left as it is")  # fmt: skip
        if edited_since(now, row.sent_at, self._offset):
            return _left(row, f"changed in iVvy on {now.get('modifiedDate')}, after run "
                         f"{run} updated it: left as it is")  # fmt: skip
        params, lost = restore_params(row.task_id, row.before, row.sent)
        if len(params) <= 1 and not lost:
            message = f"run {run}'s update changed nothing: nothing to put back"
            return Outcome("unchanged", task_id=row.task_id, message=message)
        if len(params) <= 1:
            return _left(row, f"run {run}'s changes cannot be put back ({', '.join(lost)})")
        return Payload(number, params, warnings=tuple(
            f"{name}: the value before run {run} was empty and iVvy cannot clear it"
            for name in lost
        ))  # fmt: skip


def _put_back(
    gone: Cancelled, current: Mapping[int, Mapping[str, Any]], offset: float, run: int
) -> Payload | Outcome:
    """What the undo does with a task run ``run`` cancelled as gone from its export: its
    status put back, unless it was Cancelled already, is no longer in iVvy, or was changed in
    iVvy since the cancel (an ``Outcome`` saying so)."""
    why = f"{gone.column} {gone.key!r}: run {run} cancelled task {gone.task_id} as gone from its "
    why += "export"
    task = current.get(gone.task_id)
    if gone.status is None:
        message = (
            f"{why}; the status it had before was not kept (an earlier version): set it in iVvy"
        )
        return Outcome("skipped", task_id=gone.task_id, message=message)
    if gone.status == CANCELLED:
        message = f"{why}, but it was Cancelled before: nothing to put back"
        return Outcome("unchanged", task_id=gone.task_id, message=message)
    if task is None:
        message = f"{why}; it is no longer in iVvy: nothing to put back"
        return Outcome("skipped", task_id=gone.task_id, message=message)
    if not same_value(task, "status", CANCELLED) or edited_since(task, gone.written, offset):
        message = (f"{why}; changed in iVvy since (on {task.get('modifiedDate')}, status "
                   f"{task.get('status')} now): left as it is")  # fmt: skip
        return Outcome("skipped", task_id=gone.task_id, message=message)
    return Payload(Row(0, {gone.column: gone.key}), {"id": gone.task_id, "status": gone.status})


async def _uncancel(
    client: IvvyClient,
    journal: Journal,
    target: str,
    run: int,
    back: list[tuple[Cancelled, Payload | Outcome]],
    concurrency: int,
    stop: asyncio.Event,
) -> list[tuple[Row, Outcome, None]]:
    """The tasks run ``run`` cancelled as gone from its export, their status put back (a
    status sent twice is the same status: an undo stopped meanwhile sends it again); the
    results lines of them all."""
    heard: dict[int, Outcome] = {}

    def record(payload: Payload, outcome: Outcome) -> None:
        heard[int(payload.params["id"])] = outcome

    payloads = [action for _, action in back if isinstance(action, Payload)]
    if payloads and not stop.is_set():
        await send_all(client, payloads, record, SendOptions(concurrency=concurrency), stop=stop)
    restored = [c for c, _ in back if heard.get(c.task_id, Outcome("skipped")).result == "updated"]
    journal.back(target, restored)
    lines = []
    for gone, action in back:
        if isinstance(action, Outcome):
            outcome = action
        elif (done := heard.get(gone.task_id)) is None or done.result == "skipped":
            outcome = Outcome("skipped", task_id=gone.task_id, message=f"{gone.column} "
                              f"{gone.key!r}: not put back yet: the undo was stopped; run it "
                              "again to go on")  # fmt: skip
        elif done.result == "updated":
            label = STATUSES.get(gone.status or 0, gone.status)
            outcome = Outcome("updated", task_id=gone.task_id, message=f"{gone.column} "
                              f"{gone.key!r}: put back to status {gone.status} ({label}), as "
                              f"before run {run} cancelled it as gone from its export")  # fmt: skip
        else:
            outcome = done
        lines.append((Row(0, {}), outcome, None))
    return lines


def _left(row: Touched, message: str) -> Outcome:
    return Outcome("skipped", task_id=row.task_id, message=message)


def restore_params(
    task_id: int, before: Mapping[str, Any], sent: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The update that puts back what ``sent`` changed, from ``before`` (the task as iVvy
    listed it then), and the fields it cannot put back (an id that was empty)."""
    params: dict[str, Any] = {"id": task_id}
    lost: list[str] = []
    for name in changed_fields(before, sent):
        old = before.get(name)
        if name == "name":
            params[name] = html.unescape(str(old or ""))
        elif name == "description":
            params[name] = text_of(old)
        elif name == "endDatetime":
            if old:
                params[name] = str(old).removesuffix(" UTC")
            else:
                lost.append(name)
        elif name in _IDS or name == "status":
            number = whole_number(old, zero=name == "status")
            if number is None and name == "contactId":
                number = whole_number(before.get("companyContactId"))
            if number is None:
                lost.append(name)
            else:
                params[name] = number
        elif old not in (None, ""):
            params[name] = old
        else:
            lost.append(name)
    return params, lost


def changed_fields(now: Mapping[str, Any], sent: Mapping[str, Any]) -> list[str]:
    """The fields among those ``sent`` whose value iVvy holds now is not what was sent."""
    return [
        name for name, value in sent.items() if name != "id" and not same_value(now, name, value)
    ]


def text_of(stored: Any) -> str:
    """A description iVvy holds as HTML, as the text to send back: paragraphs and line breaks
    as new lines, tags dropped, entities decoded."""
    if stored is None:
        return ""
    value = str(stored)
    if "<" in value:
        value = _TAGS.sub("", _BREAKS.sub("\n", value))
    return html.unescape(value).strip()


def _describe(row: Touched, action: Payload | Outcome, original: int) -> tuple[str, Outcome]:
    """The plan's verb for a row, and what its plan sheet says."""
    if isinstance(action, Outcome):
        return "leave", action
    if row.result == "created":
        return "cancel", Outcome("valid", task_id=row.task_id, message="plan: set to Cancelled")
    fields = ", ".join(k for k in action.params if k != "id")
    message = f"plan: put back the values run {original} replaced ({fields})"
    return "restore", Outcome("valid", task_id=row.task_id, message=message,
                              warnings=action.warnings)  # fmt: skip


def _write_plan(
    summary: RunSummary,
    journal: Journal,
    original: RunRecord,
    actions: _Actions,
    back: list[tuple[Cancelled, Payload | Outcome]],
) -> None:
    def planned() -> Iterator[tuple[Row, Outcome, None]]:
        touched = journal.touched(original.id)
        try:
            for row in touched:
                verb, outcome = _describe(row, actions.of(row), original.id)
                summary.plan[verb] += 1
                yield Row(row.number, {}), outcome, None
        finally:
            touched.close()
        for gone, action in back:
            if isinstance(action, Outcome):
                summary.plan["leave"] += 1
                yield Row(0, {}), action, None
                continue
            summary.plan["restore"] += 1
            message = (
                f"plan: {gone.column} {gone.key!r}: put back status {gone.status}, as before "
                f"run {original.id} cancelled it as gone from its export"
            )
            yield Row(0, {}), Outcome("valid", task_id=gone.task_id, message=message), None

    assert summary.results is not None
    write_results(summary, summary.results, [], planned())


def _write(
    summary: RunSummary,
    journal: Journal,
    original: RunRecord,
    run: RunJournal,
    actions: _Actions,
    lines: list[tuple[Row, Outcome, None]],
) -> None:
    """The undo's results: each row the import created (cancelled, or why not) or updated (put
    back, or why not), in row order; the import's rows and the undo's, merged as they stream."""

    def merged() -> Iterator[tuple[Row, Outcome, None]]:
        touched = journal.touched(original.id)
        undone = run.outcomes()
        pending = next(undone, None)
        try:
            for row in touched:
                while pending is not None and pending[0] < row.number:
                    pending = next(undone, None)
                done = pending[1] if pending is not None and pending[0] == row.number else None
                verb = "cancelled" if row.result == "created" else "put back"
                if done is not None and done.result == "updated":
                    if row.result == "created":
                        outcome = Outcome(
                            "cancelled",
                            task_id=row.task_id,
                            message="set to Cancelled",
                            warnings=done.warnings,
                        )
                    else:
                        outcome = Outcome("updated", task_id=row.task_id, message="put back "
                                          f"the values run {original.id} replaced",
                                          warnings=done.warnings)  # fmt: skip
                elif done is not None:
                    outcome = done
                else:
                    outcome = Outcome("skipped", task_id=row.task_id, message=f"not {verb} yet: "
                                      "the undo was stopped; run it again to go on")  # fmt: skip
                summary.plan["cancel" if row.result == "created" else "restore"] += (
                    outcome.result in ("updated", "cancelled")
                )
                yield Row(row.number, {}), outcome, None
        finally:
            touched.close()
        for line in lines:  # the tasks it cancelled as gone from its export
            summary.plan["restore"] += line[1].result == "updated"
            yield line

    assert summary.results is not None
    write_results(summary, summary.results, [], merged())
