"""The pipeline's orchestration: read → map → normalise → validate → send → record → write
results, each stage in its own module.

:func:`run_import` is the whole job and :func:`validate_source` every check of it with nothing
sent. They put together :mod:`.prepare` (read, map, one pass over every row before anything is
sent), :mod:`.check` (each row normalised and validated), :mod:`.plan` (what to do with each row,
from the journal), :mod:`.feed` (rows to the send stage, journalled in flight), :mod:`.send`,
and :mod:`.summary`; here is the journal policy (which run this is: new, resumed, refused) and
the assembly of the results. The public calls are in :mod:`importer` (``_api``).
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import timedelta
from itertools import chain, islice
from pathlib import Path
from typing import Any

from .blocks import checked_blocks, takes_blocks
from .check import checked_rows
from .client import ApiError, IvvyClient, IvvyError
from .directory import Directory
from .errors import BrokenExport, EmptySource, UsageError
from .feed import Feed
from .fields import BATCH_NOT_DONE
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
    open_journal,
    read_only_journal,
)
from .missing import present_keys, settle_missing
from .model import SUCCESSFUL, Outcome, Payload, Result, Row
from .notify import notify
from .options import DEFAULTS, RunOptions
from .plan import (
    UPDATE,
    UPDATE_THEIRS,
    Lineage,
    Planner,
    _planned,
    _with_key,
    refuse_their_tasks,
    unknown_ids,
)
from .prepare import Prepared, prepare_online
from .progress import OnEvent, Tally
from .reconcile import SLACK, Reconciler, matches, plain
from .results import Block, check_results_path, default_results_path
from .send import (
    INTERRUPTED,
    KEEP_IN_FLIGHT,
    SendStats,
    batch_pending,
    job_error,
    job_verdict,
    match_results,
    not_saved,
    send_all,
    send_batches,
)
from .summary import RunSummary, write_results


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
    reconciler.own_all(journal.tasks_sent_since(target, since))
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
    where = f"{source.path} into {target} (journal {journal.where})"
    if options.journal.resume:
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
    if latest is not None and not options.journal.new_run:
        counts = journal.row_counts(latest.id)
        done = sum(n for result, n in counts.items() if result != "in_flight")
        reached, detail = _reached(done, counts["in_flight"])
        if latest.status != "finished" and options.key is None:
            raise UsageError(
                f"run {latest.id} of {where} stopped after {reached} of {prepared.rows} rows"
                f"{detail}: give --resume to go on where it stopped (rows it may have sent are "
                "looked up, not sent twice), or --new-run to begin a new run through every row "
                "(rows that already have a task are updated or left unchanged, never created again)"
            )
        if latest.status != "finished":
            notes.append(
                f"run {latest.id} of this source stopped after {reached} rows{detail}; this run "
                f"goes through every row (--key: rows already imported are updated or left alone)"
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
    every = options.flat()
    kept: dict[str, Any] = {name: every[name] for name in _PAYLOAD_OPTIONS}
    if options.source.fixes:
        kept["fixes"] = len(options.source.fixes)
    record = journal.start(
        kind="import",
        target=target,
        source=str(source.path.resolve()),
        print_=print_,
        options=kept,
        results=str(results),
    )
    return record, False, notes


#: Rows of a keyed run looked for in iVvy when its journal knows no keys, and pages read each.
LOST_JOURNAL_ROWS = 3
LOST_JOURNAL_PAGES = 5


def _reached(done: int, in_flight: int) -> tuple[int, str]:
    """How far a stopped run got (its rows done, and those sent with no answer recorded), and
    what to say of the rows in flight, if any."""
    if not in_flight:
        return done, ""
    return done + in_flight, f" ({done} done, {in_flight} in flight: looked up first)"


async def refuse_a_lost_journal(
    client: IvvyClient,
    prepared: Prepared,
    directory: Directory | None,
    options: RunOptions,
    journal_where: str,
) -> None:
    """UsageError (exit 2) when a keyed run begins with a journal that knows no keys while the
    account already holds tasks like its first rows: the journal of the earlier nights is
    likely lost (a new machine, a pod without a lasting disk), and the run would create every
    task again. A few rows are looked for, a few pages each (a list that ignores its filter is
    checked task by task, and read no further)."""
    first = [
        checked
        for _, checked in islice(
            checked_rows(prepared, directory, default_venue=options.venue_id), 50
        )
        if isinstance(checked, Payload) and not checked.is_update
    ][:LOST_JOURNAL_ROWS]
    for payload in first:
        name = payload.params.get("name")
        read = 0
        async for task in client.iter_collection(
            "crm", "getTaskList", filter={"name": name} if name else None
        ):
            if matches(task, payload.params):
                raise UsageError(
                    f"the journal ({journal_where}) knows no row imported with --key "
                    f"{options.key!r} into this account, yet the account already holds task "
                    f"{task.get('id')}, like row {payload.row.number} ({plain(name)!r}): the "
                    "journal of the earlier runs looks lost (a new machine, a worker without a "
                    "lasting disk), and this run would create every task again. Point --state "
                    "at that journal, or give --trust-empty-journal if those tasks are not "
                    "this export's"
                )
            read += 1
            if read >= LOST_JOURNAL_PAGES * 100:
                break


def refuse_too_many_changes(
    prepared: Prepared, directory: Directory | None, known: Known, options: RunOptions
) -> None:
    """UsageError (exit 2) when the run would update more tasks than ``options.max_changes``
    allows: its plan, made as ``validate`` makes it, before anything is sent."""
    assert options.max_changes is not None
    plan: Counter[str] = Counter()
    origin = fingerprint(prepared.source.path, prepared.source.sheet)
    planner = Planner(known, Lineage(known, prepared, origin, ""), options.key)
    rows = checked_rows(prepared, directory, default_venue=options.venue_id, key=options.key,
                        only=options.only)  # fmt: skip
    present: set[str] = set()
    if options.key:
        rows = present_keys(rows, options.key, present)
    for _ in _planned(planner, rows, plan):
        pass
    changes = plan[UPDATE] + plan[UPDATE_THEIRS]
    what = "update"
    if options.key and options.missing == "cancel" and prepared.earlier is None:
        gone = sum(1 for _ in known.vanished(options.key, present))
        what = f"update or cancel ({changes} updated, {gone} cancelled: gone from the export)"
        changes += gone
    if not options.max_changes.allows(changes, prepared.rows):
        raise UsageError(
            f"this run would {what} {changes} of {prepared.rows} tasks, more than --max-changes "
            f"{options.max_changes} allows: nothing was sent. See the plan with task-import "
            "validate, and raise the limit if the export really changed that much"
        )


#: A key that failed the same way on this many keyed runs in a row is flagged in the summary.
FAILING_RUNS = 3


def report_retries(
    journal: Journal, run_id: int, target: str, column: str, summary: RunSummary
) -> None:
    """A keyed run's rows that failed on the run before (not invalid ones: those need a
    person) are sent again by themselves, as any row not yet done is: say how many and how
    they went, and flag the keys that failed the same way on ``FAILING_RUNS`` runs in a row."""
    earlier = journal.keyed_runs(target, column, before=run_id)
    if not earlier:
        return
    now = journal.sent_keys(run_id)
    before = journal.failed_keys(earlier[0].id)
    retried = [key for key in before if key in now]
    if retried:
        done = sum(now[key] in SUCCESSFUL for key in retried)
        summary.retried = len(retried)
        summary.warnings.append(
            f"{len(retried)} rows that failed on run {earlier[0].id} were sent again: {done} "
            f"done, {len(retried) - done} failed again"
        )
    failing = journal.failed_keys(run_id)
    history = [journal.failed_keys(r.id) for r in earlier[: FAILING_RUNS - 1]]
    for key, code in sorted(failing.items()):
        runs = 1 + next(
            (i for i, failed in enumerate(history) if failed.get(key) != code), len(history)
        )
        if runs >= FAILING_RUNS:
            summary.failing_again.append({"key": key, "error_code": code, "runs": runs})
    if summary.failing_again:
        shown = ", ".join(f"{f['key']!r} ({f['error_code']})" for f in summary.failing_again[:5])
        summary.warnings.append(
            f"{len(summary.failing_again)} rows have failed the same way on {FAILING_RUNS} runs "
            f"in a row and will not pass by themselves: {shown}; see their messages in the "
            "results"
        )


async def run_import(
    source_path: str | Path,
    client: IvvyClient,
    options: RunOptions = DEFAULTS,
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
    try:
        prepared, directory = await prepare_online(source_path, client, options)
    except EmptySource as exc:
        if options.key is None:
            raise
        raise BrokenExport(
            f"{exc}: for a --key run, an empty export is taken as a broken one, not as every "
            "task gone: nothing was sent or cancelled; check the export"
        ) from None
    summary, results_path = _summary(prepared, options, client)
    target = client.credentials.target
    with open_journal(options.journal.state, target) as journal:
        summary.journal = journal.where
        known = journal.known(target)
        if note := refuse_their_tasks(prepared, known, options, target):
            summary.warnings.append(note)
        options = _with_key(prepared, known, options, summary.warnings)
        if (
            options.key
            and not options.journal.trust_empty
            and not known.knows_keys(options.key)
            and not any(
                sum(journal.row_counts(r.id).values())
                for r in journal.keyed_runs(target, options.key, before=sys.maxsize)
            )
        ):
            # No row of a run keyed so into this target, not even of one killed before its
            # keys were written (its rows in flight are looked up): the journal is new, or it
            # is not the one of the earlier runs.
            await refuse_a_lost_journal(client, prepared, directory, options, journal.name)
        if options.max_changes is not None:
            refuse_too_many_changes(prepared, directory, known, options)
        reconciler = Reconciler(client, settle=options.send.settle)
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
        present: set[str] | None = None
        if options.key and options.missing != "ignore" and prepared.earlier is None:
            present = set()  # the keys this source holds, any row's (see settle_missing)
            rows = present_keys(rows, options.key, present)
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
            planner = Planner(known, lineage, options.key, clear_blanks=options.blanks == "clear")

            def before_of(task: int) -> Mapping[str, Any] | None:
                # An update in flight when a run stopped read the task as it was first.
                found: Mapping[str, Any] | None = known.before(task)
                if found is None and directory is not None:
                    found = directory.task(task)
                return found

            feed = Feed(
                run, rows, stop, planner.decide, before_of=before_of,
                written_of=None if options.overwrite_edits else known.written,
                clock_offset=client.measured_offset,
            )  # fmt: skip
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
        vanished: list[tuple[Row, Outcome]] = []
        if options.key:
            run.flush()
            report_retries(journal, record.id, target, options.key, summary)
            if present is not None and not summary.interrupted and not invalid:
                vanished = await settle_missing(
                    client, journal, known, record.id, prepared.rows, present, options, summary
                )
        merged = chain(_merged(prepared.source.rows(), run.outcomes()), vanished)
        _finish(summary, merged, prepared, results_path, clock, lineage.cells)
        journal.end(record.id, "stopped" if summary.interrupted else "finished")
        if options.notify and (problem := notify(options.notify, journal, record, summary)):
            summary.warnings.append(problem)
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
    sending = options.send

    async def send(payloads: Iterator[Payload]) -> SendStats:
        stats = tally.send_stats()
        if sending.via == "batch":
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
    if feed.cleared and all(s.session_ended is None for s in stats):
        summary.not_cleared = await feed.check_cleared(client)
        if summary.not_cleared:
            summary.warnings.append(
                f"--blanks clear: {summary.not_cleared} updated tasks still hold a field sent "
                "empty to clear it, or could not be read back (NOT_CLEARED in the results): "
                "iVvy may not clear a field sent empty; clear those in iVvy"
            )
    summary.send_seconds = time.monotonic() - began
    summary.rate_limited = sum(s.rate_limited for s in stats)
    ended = next((s.session_ended for s in stats if s.session_ended is not None), None)
    if ended is not None:
        summary.session_ended = ended.full_message
        summary.warnings.append(
            f"iVvy ended the session ({ended.full_message}): the run stopped at once; the rows "
            "not sent are skipped. Check the API key, then --resume"
        )


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
    results = (
        options.results
        if isinstance(options.results, Path)
        else default_results_path(
            prepared.source.path, kind, numbered=prepared.earlier is not None and kind == "results"
        )
    )
    check_results_path(results, prepared.source.path)
    target = client.credentials.target if client else "offline (no credentials)"
    summary = RunSummary(
        source=prepared.source.path,
        results=results,
        target=target,
        warnings=list(prepared.warnings),
        reject_limit=options.max_rejects,
    )
    return summary, results


def _finish(
    summary: RunSummary,
    outcomes: Iterable[tuple[Row, Outcome] | Block],
    prepared: Prepared,
    results: Path,
    clock: float,
    place: Callable[[Row], tuple[int, str]] | None = None,
) -> RunSummary:
    """Write the results (every row, in source order, with its ``place``: see
    :meth:`Lineage.cells`) and complete the summary."""

    def ended() -> None:
        summary.seconds = time.monotonic() - clock

    def placed() -> Iterator[tuple[Row, Outcome, tuple[int | None, str] | None] | Block]:
        for item in outcomes:
            if isinstance(item, Block):  # placed already
                yield item
                continue
            row, outcome = item
            # A line of no source row (a key gone from it: see settle_missing) has no number.
            yield row, outcome, (None, "") if row.number == 0 else place(row) if place else None

    return write_results(summary, results, prepared.data_headers, placed(), ending=ended)


async def validate_source(
    source_path: str | Path,
    client: IvvyClient | None,
    options: RunOptions = DEFAULTS,
    *,
    target: str | None = None,
    numbers: Collection[int] | None = None,
    on_verdict: Callable[[Row, Outcome, str], None] | None = None,
    blocks: bool = True,
) -> RunSummary:
    """Every check of a run, online ones when a ``client`` is given, and nothing sent to
    addOrUpdateTask: a results sheet whose ``result`` is ``valid`` or ``invalid``, and the plan
    (what a run into the target, ``client``'s else ``target``, would do with each row: create,
    update a task this tool made, update one it did not make, leave unchanged), from the
    journal. Rows that would update tasks this tool did not make, unless the user said they
    may, make the summary a refusal (exit 2), as the run would be.

    With ``numbers``, only the rows of those numbers are checked, planned and written (a
    re-check after a correction), while what is decided from every row (the date order, the
    ids of unknown origin, the plan's refusal) is as a full check decides it: the source is
    read whole again, unless ``options.source.row_cache`` holds it from a full check with
    the cells those decisions depend on as they read now (then only those rows are read, from
    memory). ``on_verdict`` is given each row, its verdict and its plan's verb. ``blocks=False``
    makes every row one by one even where :mod:`.blocks` would check them a batch at a time
    (the results are the same: a differential test compares the two)."""
    clock = time.monotonic()
    # (Only the block path below takes the rows normalised early.)
    early = blocks and numbers is None and on_verdict is None
    prepared, directory = await prepare_online(
        source_path, client, options, numbers=numbers, early=early
    )
    summary, results_path = _summary(prepared, options, client, "validation")
    if directory is None:
        summary.warnings.append(
            "offline: ids, users and venues were not checked against iVvy (set IVVY_API_KEY "
            "and IVVY_API_SECRET, or give --sandbox)"
        )
    target = client.credentials.target if client is not None else target
    journal_at = options.journal.state or (default_journal_path(target) if target else None)
    db = read_only_journal(journal_at) if journal_at is not None and target else None
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
        summary.rules = prepared.rules
        if (
            blocks
            and directory is None
            and numbers is None
            and on_verdict is None
            and takes_blocks(prepared, known, origin, options.key)
        ):
            # Every row, offline: a batch at a time, column by column (see importer.blocks).
            checked = checked_blocks(prepared, known, planner, lineage, summary.plan,
                                     key=options.key)  # fmt: skip
            return _finish(summary, checked, prepared, results_path, clock)
        prepared.early = None  # (the row path normalises as it checks)
        checked_all = checked_rows(
            prepared, directory, default_venue=options.venue_id, key=options.key,
            only=options.only, numbers=numbers,
        )  # fmt: skip
        verdicts = _planned(planner, checked_all, summary.plan, on_verdict)
        return _finish(summary, verdicts, prepared, results_path, clock, lineage.cells)
    finally:
        if db is not None:
            db.close()
