"""Undo an import: the API has no task delete, so every task the run created is set to Cancelled
(status 3). Updates cannot be undone (the values they replaced are not known): they are listed.

An undo is journalled like a run (each row in flight before it is sent, done after), so a stopped
undo goes on where it stopped when it is run again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

from .client import IvvyClient
from .errors import UsageError
from .journal import (
    Journal,
    RunJournal,
    RunRecord,
    default_journal_path,
    is_done,
    read_only_journal,
)
from .model import Outcome, Payload, Row
from .pipeline import Feed, RunSummary, settle_in_flight
from .reconcile import Reconciler
from .results import open_results
from .send import SendOptions, send_all

CANCELLED = 3


def _chosen(journal: Journal, target: str, run_id: int | None) -> RunRecord:
    imports = [r for r in journal.runs(target) if r.kind == "import"]
    if not imports:
        raise UsageError(f"nothing to undo: no import into {target} in the journal {journal.path}")
    if run_id is None:
        run_id = imports[0].id
    chosen = next((r for r in imports if r.id == run_id), None)
    if chosen is None:
        known = ", ".join(f"{r.id} ({Path(r.source).name}, {r.started})" for r in imports[:10])
        raise UsageError(f"no import run {run_id} into {target} in {journal.path}; runs: {known}")
    if chosen.status == "pruned":
        raise UsageError(
            f"run {run_id}'s rows were pruned from the journal (task-import runs "
            "--forget-older-than): which tasks it created is no longer known"
        )
    return chosen


def undo_results_path(original: RunRecord) -> Path:
    base = Path(original.results or original.source)
    stem = base.name.split(".")[0]
    return base.with_name(f"{stem}.undo-{original.id}.csv")


async def undo_run(
    client: IvvyClient,
    run_id: int | None = None,
    *,
    state: Path | None = None,
    results: Path | None = None,
    concurrency: int = 8,
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """Cancel every task import run ``run_id`` (default: the latest into this target) created;
    the summary, with a results sheet of every row it created or updated."""
    clock = time.monotonic()
    stop = stop or asyncio.Event()
    target = client.credentials.target
    await client.measure_clock()
    with Journal(state or default_journal_path(target)) as journal:
        reconciler = Reconciler(client)
        await settle_in_flight(journal, target, reconciler, client)
        original = _chosen(journal, target, run_id)
        mark = f"undo:{original.id}"
        earlier = journal.latest(target, mark, kind="undo")
        if earlier is not None and earlier.status == "finished":
            raise UsageError(
                f"run {original.id} was already undone on {earlier.finished}; see {earlier.results}"
            )
        results = results or undo_results_path(original)
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
        # The rows the import created, streamed through a second, reading connection (the
        # journal's own writes go on beside it).
        reader = read_only_journal(journal.path)
        assert reader is not None  # the journal exists: it is open
        try:
            created = reader.execute(
                "SELECT number, task_id FROM rows WHERE run = ? AND state = 'done' "
                "AND result = 'created' AND task_id IS NOT NULL ORDER BY number",
                (original.id,),
            )

            def rows() -> Iterator[tuple[Row, Payload | Outcome]]:
                for number, task_id in created:
                    if not is_done(finished, number):
                        row = Row(number, {})
                        yield row, Payload(row, {"id": task_id, "status": CANCELLED})

            feed = Feed(run, rows(), stop, key=None, target=target)
            options = SendOptions(concurrency=concurrency)
            stats = await send_all(
                client, feed.payloads(), feed.record, options, reconciler, stop=stop
            )
            feed.release()
        finally:
            reader.close()
        journal.forget_cancelled(target, record.id)
        summary = RunSummary(source=Path(original.source), results=results, target=target)
        summary.journal, summary.run_id = journal.path, record.id
        summary.undoes = original.id
        summary.interrupted = stop.is_set()
        if stats.session_ended is not None:
            summary.session_ended = stats.session_ended.full_message
        summary.seconds = time.monotonic() - clock
        _write(summary, journal, original, run)
        journal.end(record.id, "stopped" if summary.interrupted else "finished")
    return summary


def _write(summary: RunSummary, journal: Journal, original: RunRecord, run: RunJournal) -> None:
    """The undo's results: each row the import created (cancelled, or why not) or updated (which
    cannot be undone), in row order; the import's rows and the undo's, merged as they stream."""
    touched = _stream_touched(journal, original.id)
    undone = run.outcomes()
    pending = next(undone, None)
    with open_results(summary.results, []) as sheet:
        for number, result, task_id in touched:
            while pending is not None and pending[0] < number:
                pending = next(undone, None)
            done = pending[1] if pending is not None and pending[0] == number else None
            row = Row(number, {})
            if result == "updated":
                outcome = Outcome(
                    "skipped",
                    task_id=task_id,
                    message=f"run {original.id} updated this task: an update cannot be undone "
                    "(the values it replaced are not known)",
                )
            elif done is not None and done.result == "updated":
                outcome = Outcome("updated", task_id=task_id, message="set to Cancelled")
            elif done is not None:
                outcome = done
            else:
                outcome = Outcome("skipped", task_id=task_id, message="not cancelled yet: the "
                                  "undo was stopped; run it again to go on")  # fmt: skip
            summary.counts[outcome.result] += 1
            if outcome.error_code is not None:
                summary.codes[str(outcome.error_code)] += 1
            sheet.add(row, outcome)
        sheet.close(summary.sheet_lines(), summary.codes)


def _stream_touched(journal: Journal, run_id: int) -> Iterator[tuple[int, str, int]]:
    """The rows run ``run_id`` created or updated, in row order, read on a connection of their
    own (the undo's outcomes are read on the journal's meanwhile)."""
    reader = read_only_journal(journal.path)
    assert reader is not None
    try:
        yield from reader.execute(
            "SELECT number, result, task_id FROM rows WHERE run = ? AND state = 'done' "
            "AND result IN ('created', 'updated') ORDER BY number",
            (run_id,),
        )
    finally:
        reader.close()
