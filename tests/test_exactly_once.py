"""Exactly once, under every fault the sandbox can produce: each knob drives the importer end to
end over loopback, and each test asserts on what the sandbox received (``/_sandbox/requests``)
and holds (``/_sandbox/tasks``, which says who made each task), not only on our results sheet:

- every source row once in the results;
- as many tasks made by the importer as rows reported ``created`` (a lost create whose task
  could not be told apart from another writer's ends ``AMBIGUOUS`` and may account for one more);
- no row holding a task it did not make (a seeded one, another writer's, another row's).
"""

from __future__ import annotations

import asyncio
import csv
import html
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from importer.cli import main
from importer.sandbox import default_seed
from importer.sandbox._store import as_html

from .test_cli_run import env_for, read_results

DUE = "2026-12-01 09:00:00"
REFERENCE_FIELDS = {
    "id", "venueId", "leadId", "contactId", "companyId", "name", "endDatetime", "priority",
    "assignedUserId", "status", "description",
}  # fmt: skip
#: Results that say the row may be in iVvy, to be settled by a person or the next run.
MAYBE_IN_IVVY = {"AMBIGUOUS", "BATCH_PENDING", "INTERRUPTED", "UNSETTLED"}
INTEGERS = {"id", "venueId", "leadId", "contactId", "companyId", "assignedUserId", "status"}


def rows_of(count: int) -> list[dict[str, Any]]:
    """Rows whose text iVvy rewrites (``&``, ``<``, quotes, a line break)."""
    return [
        {
            "name": f"Call & follow up <{n}>",
            "endDatetime": DUE,
            "contactId": (n % 200) + 1,
            "priority": ("low", "medium", "high")[n % 3],
            "status": n % 5,
            "description": f'Ask "about" the gala & dinner\nrow {n}',
        }
        for n in range(count)
    ]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def seeded_with(rows: list[dict[str, Any]], *, days_ago: float = 1) -> dict[str, Any]:
    """The default seed plus an account already holding a task identical to every row (made
    by hand, an earlier import, or another tool), created ``days_ago`` days before now."""
    made = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%d %H:%M:%S")
    tasks = [
        {**row, "id": 10_000 + n, "createdDate": made, "modifiedDate": made}
        for n, row in enumerate(rows)
    ]
    return {**default_seed(), "tasks": tasks}


def run(server, source: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["run", str(source), "--json", *args], env=env_for(server))


def truth(
    server, source: Path, rows: list[dict[str, Any]], *, allowed: set[str] = frozenset()
) -> dict[str, Any]:
    """The checks every test makes; what it found, for more."""
    results = read_results(source.with_name(source.stem + ".results.csv"))
    numbers = [int(r["row"]) for r in results]
    assert len(numbers) == len(rows) and numbers == sorted(set(numbers))  # each row once
    by_result = Counter(r["result"] for r in results)
    failed = [r for r in results if r["result"] != "created"]
    assert {r["error_code"] for r in failed} <= allowed, Counter(r["error_code"] for r in failed)
    tasks = {t["id"]: t for t in server.tasks()}
    made = {i for i, t in tasks.items() if t["_sandbox"]["creator"] == "client"}
    created = [int(r["task_id"]) for r in results if r["result"] == "created"]
    assert len(created) == len(set(created))  # no task claimed by two rows
    for result, row in zip(results, rows, strict=True):
        if result["result"] != "created":
            continue
        task = tasks[int(result["task_id"])]
        # The row's own task: made by the importer, with the row's content.
        assert task["_sandbox"]["creator"] == "client", (result, task)
        # (iVvy shows text as HTML: the name escaped, the description a paragraph.)
        assert task["name"] == html.escape(row["name"]) and task["endDatetime"] == f"{DUE} UTC"
        assert task["description"] == as_html(row["description"])
    unclaimed = made - set(created)
    ambiguous = [r for r in results if r["error_code"] in MAYBE_IN_IVVY]
    # Tasks the importer made that no row claims: only those of rows that say they may be in
    # iVvy (and are not sent again: the next run settles them).
    assert len(unclaimed) <= len(ambiguous), (len(unclaimed), len(ambiguous))
    claimable = {html.escape(r["name"]) for r in ambiguous}
    assert all(tasks[i]["name"] in claimable for i in unclaimed)
    for body in sent_bodies(server):
        assert set(body) <= REFERENCE_FIELDS, body
        assert all(type(body[k]) is int for k in INTEGERS & set(body)), body
    return {"results": results, "counts": by_result, "tasks": tasks, "made": made}


def sent_bodies(server) -> list[dict[str, Any]]:
    bodies = []
    for request in server.get("/_sandbox/requests"):
        body = request["body"]
        if request["action"] == "addOrUpdateTask" and isinstance(body, dict):
            bodies.append(body)
        elif request["action"] == "run" and isinstance(body, dict):
            bodies += [job["params"] for job in body.get("jobs", [])]
    return bodies


def test_lost_answers_of_every_kind_make_each_task_once(make_sandbox, tmp_path):
    server = make_sandbox(
        fail_rate=0.04, drop_rate=0.04, error_after_write_rate=0.04, random_seed=12
    )
    rows = rows_of(1000)
    source = write(tmp_path / "lost.csv", rows)
    outcome = run(server, source, "--settle-s", "1")
    assert outcome.exit_code == 0, outcome.output
    found = truth(server, source, rows)
    assert len(found["made"]) == 1000
    faults = server.stats()["faults"]
    assert server.stats()["drops"] and faults["error_after_write"]


def test_late_writes_and_lagging_reads_are_waited_for_not_sent_twice(make_sandbox, tmp_path):
    server = make_sandbox(late_write_rate=0.05, late_write_max_s=1.5, read_lag_s=0.5, random_seed=4)
    rows = rows_of(1000)
    source = write(tmp_path / "late.csv", rows)
    outcome = run(server, source, "--settle-s", "3")
    assert outcome.exit_code == 0, outcome.output
    found = truth(server, source, rows)
    assert len(found["made"]) == 1000
    assert server.stats()["faults"]["late_write"] > 20


def test_an_account_holding_tasks_identical_to_the_sheet_keeps_them(make_sandbox, tmp_path):
    rows = rows_of(1000)
    # Filters ignored: every look-up sees the old tasks too, and must leave them alone.
    server = make_sandbox(
        seed=seeded_with(rows), fail_rate=0.05, drop_rate=0.05, random_seed=8, ignore_filters=True
    )
    source = write(tmp_path / "again.csv", rows)
    outcome = run(server, source, "--settle-s", "1")
    assert outcome.exit_code == 0, outcome.output
    found = truth(server, source, rows)
    assert len(found["made"]) == 1000
    old = set(range(10_000, 11_000))
    assert not {int(r["task_id"]) for r in found["results"]} & old  # none of the old ones
    assert server.stats()["drops"] > 20


def test_other_writers_making_identical_tasks_are_never_taken(make_sandbox, tmp_path):
    rows = rows_of(1000)
    server = make_sandbox(
        seed=seeded_with(rows, days_ago=0.01),  # identical tasks made 15 minutes ago
        other_writers=2,
        other_writer_every_ms=20,
        other_identical_share=0.5,
        fail_rate=0.05,
        drop_rate=0.05,
        random_seed=21,
    )
    source = write(tmp_path / "busy.csv", rows)
    outcome = run(server, source, "--settle-s", "1")
    found = truth(server, source, rows, allowed={"AMBIGUOUS"})
    others = [t for t in found["tasks"].values() if t["_sandbox"]["creator"].startswith("other")]
    assert len(others) > 50
    assert outcome.exit_code == (1 if found["counts"]["failed"] else 0), outcome.output
    ambiguous = [r for r in found["results"] if r["error_code"] == "AMBIGUOUS"]
    assert all("task(s)" in r["message"] for r in ambiguous)


def test_a_lost_create_is_found_although_iVvy_rewrote_its_text(make_sandbox, tmp_path):
    server = make_sandbox(drop_rate=1.0)
    rows = rows_of(30)
    source = write(tmp_path / "html.csv", rows)
    outcome = run(server, source, "--settle-s", "0.5")
    assert outcome.exit_code == 0, outcome.output
    found = truth(server, source, rows)
    # Every answer was lost, every task found: each row sent exactly once.
    names = Counter(b["name"] for b in sent_bodies(server))
    assert set(names.values()) == {1} and len(names) == 30
    assert all("answer was lost" in r["warnings"] for r in found["results"])


def test_a_server_clock_ten_minutes_off_is_measured_and_used(make_sandbox, tmp_path):
    server = make_sandbox(clock_skew_s=600, drop_rate=0.05, random_seed=3)
    rows = rows_of(1000)
    source = write(tmp_path / "skew.csv", rows)
    outcome = run(server, source, "--settle-s", "1")
    assert outcome.exit_code == 0, outcome.output
    found = truth(server, source, rows)
    assert len(found["made"]) == 1000
    assert "clock" in " ".join(_summary(outcome)["warnings"])
    assert server.stats()["by_status"].get("401", 0) <= 1  # at most the one that taught it


def test_success_false_is_a_failure_with_the_servers_message(make_sandbox, tmp_path):
    server = make_sandbox(false_success_rate=0.05, random_seed=6)
    rows = rows_of(1000)
    source = write(tmp_path / "false.csv", rows)
    outcome = run(server, source)
    found = truth(server, source, rows, allowed={"NOT_SAVED"})
    refused = [r for r in found["results"] if r["error_code"] == "NOT_SAVED"]
    assert refused and all(r["message"] == "The task could not be saved" for r in refused)
    assert all(r["task_id"] in ("", None) for r in refused)
    assert len(found["made"]) == 1000 - len(refused)
    assert outcome.exit_code == 1


@pytest.mark.parametrize("code", [462, 463])
def test_an_ended_session_stops_the_run_at_once_exit_3(make_sandbox, tmp_path, code):
    server = make_sandbox(session_end_after=150, session_end_code=code)
    rows = rows_of(1000)
    source = write(tmp_path / "ended.csv", rows)
    outcome = run(server, source)
    assert outcome.exit_code == 3, outcome.output
    found = truth(server, source, rows, allowed={str(code), ""})
    counts = found["counts"]
    assert counts["created"] == len(found["made"]) < 150
    assert counts["skipped"] == 1000 - counts["created"]
    assert _summary(outcome)["session_ended"]
    # Nothing more was asked of iVvy once it said so (the rows in flight at that moment aside).
    assert server.stats()["by_status"][str(code)] <= 40


def test_gateway_answers_and_busy_429s_are_waited_out(make_sandbox, tmp_path):
    server = make_sandbox(gateway_rate=0.05, busy_rate=0.05, random_seed=9)
    rows = rows_of(1000)
    source = write(tmp_path / "gateway.csv", rows)
    outcome = run(server, source, "--settle-s", "1")
    assert outcome.exit_code == 0, outcome.output
    found = truth(server, source, rows)
    assert len(found["made"]) == 1000
    faults = server.stats()["faults"]
    assert faults["gateway"] > 20 and faults["busy"] > 20


def test_batches_answered_out_of_order_and_short_give_each_row_its_own_task(make_sandbox, tmp_path):
    server = make_sandbox(batch_short_rate=0.5, fail_rate=0.03, random_seed=5)
    rows = rows_of(1000)
    source = write(tmp_path / "batch.csv", rows)
    outcome = run(server, source, "--via", "batch", "--settle-s", "1")
    found = truth(server, source, rows, allowed={"BATCH_PENDING"})
    assert outcome.exit_code == (1 if found["counts"]["failed"] else 0), outcome.output
    runs = server.get("/_sandbox/requests?action=run")
    assert all(r["body"]["callbackUrl"] for r in runs)


def test_a_batch_that_never_completes_is_given_up_and_never_sent_again(make_sandbox, tmp_path):
    server = make_sandbox(batch_stall_rate=1.0)
    rows = rows_of(250)
    source = write(tmp_path / "stall.csv", rows)
    args = ("--via", "batch", "--batch-wait", "1", "--settle-s", "0.5")
    outcome = run(server, source, *args)
    assert outcome.exit_code == 1, outcome.output
    found = truth(server, source, rows, allowed={"BATCH_PENDING"})
    assert found["counts"]["failed"] == 250 - found["counts"]["created"]
    sent = len(server.get("/_sandbox/requests?action=run"))
    assert sent == 2
    again = run(server, source, *args, "--resume")  # asks the batch API: still not completed
    assert again.exit_code == 1, again.output
    truth(server, source, rows, allowed={"BATCH_PENDING"})
    assert len(server.get("/_sandbox/requests?action=run")) == sent  # never sent again blind


def test_a_queued_batch_given_up_is_settled_by_the_batch_api_on_the_next_run(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox(batch_queue_s=2.0)
    rows = rows_of(300)
    source = write(tmp_path / "queued.csv", rows)
    args = ("--via", "batch", "--batch-wait", "1", "--settle-s", "0.5")
    outcome = run(server, source, *args)
    assert outcome.exit_code == 1, outcome.output
    assert {r["error_code"] for r in read_results(tmp_path / "queued.results.csv")} == {
        "BATCH_PENDING"
    }
    seen = len(server.get("/_sandbox/requests"))
    import time

    time.sleep(2.5)  # the queue runs the batches meanwhile
    again = run(server, source, *args, "--resume")
    assert again.exit_code == 0, again.output
    found = truth(server, source, rows)
    assert len(found["made"]) == 300
    later = [r["action"] for r in server.get(f"/_sandbox/requests?since={seen}")]
    # The batch API was asked; no look-up and nothing sent again was needed.
    assert "results" in later and "getTaskList" not in later and "run" not in later


def _summary(outcome) -> dict[str, Any]:
    import json

    return json.loads(outcome.stdout.strip().splitlines()[-1])


def test_a_killed_batch_run_is_settled_by_the_batch_api_before_any_look_up(
    journal_at, make_sandbox, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    import time

    server = make_sandbox(batch_queue_s=3.0)
    rows = rows_of(300)
    source = write(tmp_path / "killed.csv", rows)
    state = journal_at("state")
    command = [sys.executable, "-m", "importer.cli", "run", str(source), "--via", "batch",
               "--state", state, "--settle-s", "0.5"]  # fmt: skip
    env = {**os.environ, **env_for(server)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(server.get("/_sandbox/batches")) < 2:  # both batches queued, neither run yet
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # the answers' asyncIds reach the journal
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert server.tasks() == []  # killed while its batches wait in the queue
    killed = len(server.get("/_sandbox/requests"))
    # A run again without --resume is refused, counting the rows sent with no answer too (or,
    # when the queue ran the batches before this run asked, the rows the batch API settled).
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2, again.stderr
    said = " ".join(again.stderr.split())
    reached = re.search(r"stopped after 300 of 300 rows(?: \((\d+) done, (\d+) in flight: "
                        r"looked up first\))?: give --resume", said)  # fmt: skip
    assert reached is not None, said
    assert reached.group(1) is None or int(reached.group(1)) + int(reached.group(2)) == 300
    time.sleep(3.5)  # the queue runs them meanwhile
    done = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = truth(server, source, rows)
    assert len(found["made"]) == 300
    later = [r["action"] for r in server.get(f"/_sandbox/requests?since={killed}")]
    # The batch API was asked (by the refused run, when the queue had run the batches by then, or
    # by the resume); no look-up and nothing sent again.
    assert "results" in later and "getTaskList" not in later and "run" not in later


def _reconciled(server, monkeypatch, steps) -> Any:
    """What ``steps`` (given a client and a reconciler over ``server``) returns, and how many
    look-ups the reconciler made. A list that seems to lag is looked at again every second, for
    up to LAG_LIMIT (here 12 s), and the row then given up: in these tests every task shows in
    every list, so a look-up made again is always a wrong hold."""
    from importer import reconcile
    from importer.client import IvvyClient

    monkeypatch.setattr(reconcile, "LAG_LIMIT", 12.0)

    async def go() -> Any:
        async with IvvyClient(server.credentials) as client:
            reconciler = reconcile.Reconciler(client, settle=1.0)
            return await steps(client, reconciler), reconciler.lookups

    return asyncio.run(go())


def test_an_update_answered_in_a_look_ups_window_does_not_hold_it_back(make_sandbox, monkeypatch):
    # An updated task keeps its old createdDate, so no list of recent tasks shows it: that is
    # no sign of a lagging list (it held the lost creates of a nightly run for a minute).
    server = make_sandbox(seed=seeded_with([{"name": "Old", "endDatetime": DUE}], days_ago=3))
    lost = {"name": "Row B", "endDatetime": DUE}

    async def steps(client, reconciler):
        first_sent = datetime.now(UTC)
        await client.add_or_update_task(lost)  # answered, but the row never heard it
        await asyncio.sleep(2.5)  # past the look-up window's opening and its SLACK
        sent = time.time()
        await client.add_or_update_task({"id": 10_000, "name": "Renamed", "endDatetime": DUE})
        reconciler.own(10_000, sent, made=False)
        return await reconciler.settle(lost, first_sent)

    outcome, lookups = _reconciled(server, monkeypatch, steps)
    assert outcome is not None and outcome.result == "created", outcome
    assert lookups == 1, lookups


def test_a_task_found_by_one_look_up_does_not_hold_back_the_next(make_sandbox, monkeypatch):
    # A's lost create is found by one look-up while B (sent 3.5 s after A) waits; the next
    # look-up's window opens after A was made, so its list does not show A. A was seen already:
    # no sign of lag (this was the minute-long stall of the late-write test in full runs).
    server = make_sandbox()
    a = {"name": "Row A", "endDatetime": DUE}
    b = {"name": "Row B", "endDatetime": DUE}

    async def steps(client, reconciler):
        sent_a = datetime.now(UTC)
        await client.add_or_update_task(a)
        await asyncio.sleep(3.5)
        sent_b = datetime.now(UTC)
        await client.add_or_update_task(b)
        await asyncio.sleep(1.0)
        found_a = asyncio.ensure_future(reconciler.settle(a, sent_a))  # due in 1 s
        await asyncio.sleep(0.5)
        found_b = await reconciler.settle(b, sent_b)  # due after A's look-up
        assert (await found_a).result == "created"
        return found_b

    outcome, lookups = _reconciled(server, monkeypatch, steps)
    assert outcome is not None and outcome.result == "created", outcome
    assert lookups == 2, lookups


@pytest.mark.parametrize("journal_at", ["postgresql"], indirect=True)
def test_a_postgresql_journal_lost_mid_run_stops_it_and_the_next_run_sends_nothing_twice(
    journal_at, make_sandbox, tmp_path
):
    """The database ends the run's connection while rows are being sent (a failover, a
    restart): the run stops at once with what to do, no traceback; run again, every row is one
    task, the rows sent before the loss looked up, never sent again blind."""
    import os
    import subprocess
    import sys
    import time
    import uuid

    import psycopg

    server = make_sandbox(latency_ms=20)
    rows = rows_of(300)
    source = write(tmp_path / "lost.csv", rows)
    name = f"lost-{uuid.uuid4().hex[:8]}"
    state = f"{journal_at('state')}&application_name={name}"
    command = [sys.executable, "-m", "importer.cli", "run", str(source), "--state", state,
               "--concurrency", "4", "--settle-s", "0.2"]  # fmt: skip
    env = {**os.environ, **env_for(server)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(server.get("/_sandbox/requests?action=addOrUpdateTask")) < 60:
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with psycopg.connect(state.split("?")[0], autocommit=True) as db:
        ended = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    assert ended
    _, err = process.communicate(timeout=60)
    message = err.decode()
    assert process.returncode == 1, message
    assert message.strip().splitlines() == [message.strip()]  # one line, nothing else
    assert message.startswith("task-import: the journal postgresql://")
    assert "stopped answering" in message and "--resume" in message
    assert "Traceback" not in message and "unexpected error" not in message
    sent = len(server.get("/_sandbox/requests?action=addOrUpdateTask"))
    assert sent < 300  # it stopped: not every row went

    made_before = len(server.tasks())
    seen = len(server.get("/_sandbox/requests"))
    done = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = truth(server, source, rows)
    assert len(found["made"]) == 300
    again = server.get(f"/_sandbox/requests?since={seen}&action=addOrUpdateTask")
    assert len(again) == 300 - made_before  # only the rows the first run never sent
