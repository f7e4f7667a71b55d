"""The journal: resume after SIGKILL, nightly re-runs with --key, undo, the lock, re-runs."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from importer.cli import main
from importer.client import IvvyClient
from importer.errors import UsageError
from importer.journal import Journal, default_journal_path
from importer.missing import EDIT_SLACK
from importer.undo import undo_run

from .conftest import sent
from .test_cli_run import env_for, read_results

HEADERS = ["Legacy Id", "Task Name", "Due Date", "Contact ID", "Status"]


def keyed_rows(count: int) -> list[dict[str, str]]:
    return [
        {
            "Legacy Id": f"L{n}",
            "Task Name": f"Task {n}",
            "Due Date": f"2026-12-{1 + n % 28:02d} 10:00",
            "Contact ID": "12",
            "Status": "Not Started",
        }
        for n in range(count)
    ]


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def invoke(server, *args: object):
    return CliRunner().invoke(main, [*map(str, args)], env=env_for(server))


def journal_bytes(state: str) -> bytes:
    """Everything a journal holds: its files' bytes, or its database tables' text."""
    if state.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(state) as db:
            tables = ("runs", "rows", "batches", "keys", "lineage", "befores")
            return "".join(
                str(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables
            ).encode()
    journal = Path(state)
    return b"".join(f.read_bytes() for f in journal.parent.glob(journal.name + "*"))


def as_json(outcome) -> dict:
    return json.loads(outcome.stdout.strip().splitlines()[-1])


def test_nightly_re_run_updates_changed_rows_creates_new_ones_and_leaves_the_rest(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(100)
    night1 = write_rows(tmp_path / "night1.csv", rows)
    first = invoke(server, "run", night1, "--key", "Legacy Id", "--json")
    assert first.exit_code == 0, first.output
    summary = as_json(first)
    assert summary["counts"] == {"created": 100}
    assert summary["exit_code"] == 0 and summary["run"] == 1
    if os.environ.get("IVVY_STATE"):  # PostgreSQL: its URL, shown without a password or query
        assert summary["journal"].startswith("postgresql://") and "?" not in summary["journal"]
    else:
        assert Path(summary["journal"]) == default_journal_path(server.credentials.target)
    ids = {r["Legacy Id"]: int(r["task_id"]) for r in read_results(tmp_path / "night1.results.csv")}
    stored = journal_bytes(os.environ.get("IVVY_STATE") or summary["journal"])
    assert server.config.key.encode() in stored
    assert server.config.secret.encode() not in stored  # the key is there, never the secret

    for n in (5, 50, 77):
        rows[n]["Status"] = "Done"
    rows += [dict(keyed_rows(102)[n]) for n in (100, 101)]
    night2 = write_rows(tmp_path / "night2.csv", rows)

    plan = invoke(server, "validate", night2, "--key", "Legacy Id", "--json")
    assert plan.exit_code == 0, plan.output
    assert as_json(plan)["plan"] == {"create": 2, "update": 3, "unchanged": 97}
    assert len(server.tasks()) == 100  # validate sends nothing

    second = invoke(server, "run", night2, "--key", "Legacy Id", "--json")
    assert second.exit_code == 0, second.output
    assert as_json(second)["counts"] == {"updated": 3, "created": 2, "unchanged": 97}
    tasks = server.tasks()
    assert len(tasks) == 102
    by_id = {t["id"]: t for t in tasks}
    results = read_results(tmp_path / "night2.results.csv")
    for row in results:
        if row["Legacy Id"] in ids:
            assert int(row["task_id"]) == ids[row["Legacy Id"]]  # the same task, every night
    assert {by_id[ids[f"L{n}"]]["status"] for n in (5, 50, 77)} == {4}

    # A third night with the same export: nothing to send.
    third = invoke(server, "run", night2, "--key", "Legacy Id", "--json")
    assert as_json(third)["counts"] == {"unchanged": 102}
    assert len(server.tasks()) == 102


def test_a_task_deleted_in_ivvy_fails_with_24392_unless_recreate_missing(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(3)
    first = invoke(server, "run", write_rows(tmp_path / "a.csv", rows), "--key", "Legacy Id")
    assert first.exit_code == 0, first.output
    gone = int(read_results(tmp_path / "a.results.csv")[1]["task_id"])
    httpx.delete(f"{server.base_url}/_sandbox/tasks/{gone}").raise_for_status()
    rows[1]["Status"] = "Done"
    changed = write_rows(tmp_path / "b.csv", rows)

    failed = invoke(server, "run", changed, "--key", "Legacy Id")
    assert failed.exit_code == 1, failed.output
    row = read_results(tmp_path / "b.results.csv")[1]
    assert (row["result"], row["error_code"]) == ("failed", "24392")

    again = invoke(server, "run", changed, "--key", "Legacy Id", "--recreate-missing")
    assert again.exit_code == 0, again.output
    row = read_results(tmp_path / "b.results.csv")[1]
    assert row["result"] == "created" and int(row["task_id"]) != gone
    assert "no longer exists" in row["warnings"]
    assert sorted(t["name"] for t in server.tasks()) == ["Task 0", "Task 1", "Task 2"]


def test_only_failed_sends_the_failed_rows_of_a_results_sheet_again(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(3)
    initial = invoke(server, "run", write_rows(tmp_path / "a.csv", rows), "--key", "Legacy Id")
    assert initial.exit_code == 0, initial.output
    gone = int(read_results(tmp_path / "a.results.csv")[2]["task_id"])
    httpx.delete(f"{server.base_url}/_sandbox/tasks/{gone}").raise_for_status()
    rows[2]["Status"] = "Done"
    first = invoke(server, "run", write_rows(tmp_path / "b.csv", rows), "--key", "Legacy Id")
    assert first.exit_code == 1, first.output  # the row whose task was deleted failed
    assert [r["result"] for r in read_results(tmp_path / "b.results.csv")] == [
        "unchanged", "unchanged", "failed"
    ]  # fmt: skip
    # The row is still the row of the deleted task (keyed as its run was): failed again, unless
    # told to create it anew.
    again = invoke(server, "run", tmp_path / "b.results.csv", "--only", "failed", "--json")
    assert again.exit_code == 1, again.output
    assert as_json(again)["counts"] == {"unchanged": 2, "failed": 1}
    assert "recreate-missing" in read_results(Path(as_json(again)["results"]))[2]["message"]
    again = invoke(
        server, "run", tmp_path / "b.results.csv", "--only", "failed", "--recreate-missing",
        "--json",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert as_json(again)["counts"] == {"unchanged": 2, "created": 1}
    assert sorted(t["name"] for t in server.tasks()) == ["Task 0", "Task 1", "Task 2"]
    assert {t["status"] for t in server.tasks() if t["name"] == "Task 2"} == {4}


def test_a_stopped_undo_goes_on_when_given_again(journal_at, make_sandbox, tmp_path):
    server = make_sandbox()
    invoke(server, "run", write_rows(tmp_path / "a.csv", keyed_rows(5)))

    async def undo(stop: bool):
        event = asyncio.Event()
        if stop:
            event.set()
        async with IvvyClient(server.credentials) as client:
            return await undo_run(client, stop=event, state=os.environ.get("IVVY_STATE"))

    stopped = asyncio.run(undo(stop=True))
    assert stopped.interrupted and stopped.counts == {"skipped": 5}
    assert {t["status"] for t in server.tasks()} == {0}
    done = asyncio.run(undo(stop=False))
    assert done.run_id == stopped.run_id and done.counts == {"cancelled": 5}
    assert {t["status"] for t in server.tasks()} == {3}


def test_re_running_a_finished_source_says_so_and_what_to_do(journal_at, sandbox, tmp_path):
    source = write_rows(tmp_path / "once.csv", keyed_rows(3))
    assert invoke(sandbox, "run", source).exit_code == 0
    again = invoke(sandbox, "run", source)
    assert again.exit_code == 2
    assert "already imported" in again.output and "--key" in again.output
    resumed = invoke(sandbox, "run", source, "--resume")
    assert resumed.exit_code == 2 and "nothing to resume" in resumed.output
    assert len(sandbox.tasks()) == 3
    # A new run goes through every row again: each has its task, none is created twice.
    forced = invoke(sandbox, "run", source, "--new-run", "--json")
    assert forced.exit_code == 0, forced.output
    assert as_json(forced)["counts"] == {"unchanged": 3}
    assert len(sandbox.tasks()) == 3


def test_a_second_run_on_a_journal_in_use_refuses(journal_at, sandbox, tmp_path):
    source = write_rows(tmp_path / "locked.csv", keyed_rows(3))
    state = journal_at("journal")
    with Journal(state):
        outcome = invoke(sandbox, "run", source, "--state", state)
    assert outcome.exit_code == 2
    assert "another task-import run is using the journal" in outcome.output
    assert sandbox.tasks() == []
    assert invoke(sandbox, "run", source, "--state", state).exit_code == 0


def test_undo_cancels_what_a_run_created_and_puts_back_what_it_updated(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(4)
    invoke(server, "run", write_rows(tmp_path / "n1.csv", rows), "--key", "Legacy Id")
    rows[0]["Status"] = "Done"
    rows[1]["Task Name"] = "Task 1 & renamed"
    rows.append(keyed_rows(5)[4])
    second = invoke(server, "run", write_rows(tmp_path / "n2.csv", rows), "--key", "Legacy Id")
    assert second.exit_code == 0, second.output
    before = {t["id"]: t for t in server.tasks()}

    planned = invoke(server, "undo", "--plan", "--json")
    assert planned.exit_code == 0, planned.output
    assert as_json(planned)["plan"] == {"cancel": 1, "restore": 2}
    assert {t["id"]: t for t in server.tasks()} == before  # a plan sends nothing
    assert [r["message"] for r in read_results(Path(as_json(planned)["results"]))] == [
        "plan: put back the values run 2 replaced (status)",
        "plan: put back the values run 2 replaced (name)",
        "plan: set to Cancelled",
    ]

    undone = invoke(server, "undo", "--json")
    assert undone.exit_code == 0, undone.output
    summary = as_json(undone)
    assert summary["counts"] == {"updated": 2, "cancelled": 1}  # a cancel says so
    statuses = {t["name"]: t["status"] for t in server.tasks()}
    assert statuses == {"Task 0": 0, "Task 1": 0, "Task 2": 0, "Task 3": 0, "Task 4": 3}
    restores = [b for b in sent(server) if set(b) != {"id", "status"} or b["status"] != 3]
    assert restores[-2:] == [
        {"id": restores[-2]["id"], "status": 0}, {"id": restores[-1]["id"], "name": "Task 1"}
    ]  # fmt: skip
    listed = read_results(Path(summary["results"]))
    assert [(r["row"], r["result"]) for r in listed] == [
        ("2", "updated"), ("3", "updated"), ("6", "cancelled")
    ]  # fmt: skip
    assert "put back" in listed[0]["message"] and listed[2]["message"] == "set to Cancelled"

    twice = invoke(server, "undo", "2")
    assert twice.exit_code == 2 and "already undone" in twice.output
    # The nightly source run again: the restored rows are updated again, the cancelled one
    # created anew (its legacy id leads nowhere now).
    again = invoke(server, "run", tmp_path / "n2.csv", "--key", "Legacy Id", "--new-run", "--json")
    assert as_json(again)["counts"] == {"updated": 2, "unchanged": 2, "created": 1}
    first = invoke(server, "undo", "1", "--json")
    assert first.exit_code == 0, first.output
    assert len(server.tasks()) == 6


def test_undo_leaves_a_task_changed_in_ivvy_since_the_run_updated_it(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(4)
    invoke(server, "run", write_rows(tmp_path / "n1.csv", rows), "--key", "Legacy Id")
    for row in rows:
        row["Status"] = "Done"
    invoke(server, "run", write_rows(tmp_path / "n2.csv", rows), "--key", "Legacy Id")
    ids = {t["name"]: t["id"] for t in server.tasks()}
    # A person changes Task 1's status, Task 2's description and Task 3's name, after the
    # update.
    time.sleep(EDIT_SLACK + 1.1)  # so that iVvy's modifiedDate shows it came later
    changes = (
        ("Task 1", {"status": 1}),
        ("Task 2", {"description": "a person's"}),
        ("Task 3", {"name": "Task 3 & renamed by hand"}),
    )
    for name, change in changes:
        httpx.post(f"{server.base_url}/_sandbox/tasks/{ids[name]}", json=change).raise_for_status()

    undone = invoke(server, "undo", "--json")
    assert undone.exit_code == 1, undone.output  # tasks left as they are: a person looks
    assert as_json(undone)["counts"] == {"updated": 1, "skipped": 3}
    listed = read_results(Path(as_json(undone)["results"]))
    assert "changed in iVvy since run 2 updated it (status differ" in listed[1]["message"]
    assert "after run 2 updated it" in listed[2]["message"]
    assert "changed in iVvy since run 2 updated it (name differ" in listed[3]["message"]
    tasks = {t["name"]: t for t in server.tasks()}
    assert {n: t["status"] for n, t in tasks.items()} == {
        "Task 0": 0, "Task 1": 1, "Task 2": 4, "Task 3 &amp; renamed by hand": 4
    }  # fmt: skip
    assert "a person" in tasks["Task 2"]["description"]


def test_sigkill_three_times_then_resume_creates_every_row_once(journal_at, make_sandbox, tmp_path):
    # Some latency, so that rows settled by one run were sent long before a later run's
    # look-up window opens: their tasks are still this source's, never "another writer's".
    server = make_sandbox(fail_rate=0.05, drop_rate=0.05, random_seed=11, latency_ms=20)
    total = 600
    source = tmp_path / "big.csv"
    write_rows(source, [{"Task Name": f"Task {n}", "Due Date": "2026-12-01 09:00"}
                        for n in range(total)])  # fmt: skip
    state = journal_at("state")
    command = [sys.executable, "-m", "importer.cli", "run", str(source), "--state", str(state),
               "--rate", "150", "--concurrency", "8", "--settle-s", "1"]  # fmt: skip
    env = {**os.environ, **env_for(server)}
    deadline = time.monotonic() + 120
    for kill in range(3):
        argv = command + (["--resume"] if kill else [])
        before = len(server.tasks())
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while len(server.tasks()) < before + 60:
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    # `runs` tells a killed run from a running one (its process is gone).
    listed = invoke(server, "runs", "--state", state, "--json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["killed"]
    shown = invoke(server, "runs", "--state", state)
    assert "killed (its process is gone: give the same command with --resume" in shown.stdout
    done = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert [r["status"] for r in json.loads(invoke(server, "runs", "--state", state,
                                                   "--json").stdout)] == ["finished"]  # fmt: skip
    tasks = server.tasks()
    names = Counter(t["name"] for t in tasks)
    assert len(tasks) == total and set(names.values()) == {1}  # every row once in the sandbox
    rows = read_results(tmp_path / "big.results.csv")
    assert [int(r["row"]) for r in rows] == list(range(2, total + 2))  # once in the results
    ids = {t["name"]: t["id"] for t in tasks}
    assert {r["result"] for r in rows} == {"created"}, Counter(r["error_code"] for r in rows)
    assert all(int(r["task_id"]) == ids[r["Task Name"]] for r in rows)
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"created": total}
    # The last kill left rows in flight: they were looked up, not sent blindly.
    assert any("in flight when an earlier run stopped" in w for w in summary["warnings"])
    assert server.stats()["drops"] > 0 and server.stats()["failures_injected"] > 0


def test_runs_are_listed_and_old_ones_pruned_keeping_the_keys(journal_at, make_sandbox, tmp_path):
    server = make_sandbox()
    rows = keyed_rows(3)
    first = invoke(server, "run", write_rows(tmp_path / "n1.csv", rows), "--key", "Legacy Id")
    assert "(run 1)" in first.output
    listed = invoke(server, "runs")
    assert listed.exit_code == 0, listed.output
    assert "run 1: import, finished" in listed.output and "3 created" in listed.output
    as_data = json.loads(invoke(server, "runs", "--json").stdout)
    assert as_data[0]["run"] == 1 and as_data[0]["counts"] == {"created": 3}

    pruned = invoke(server, "runs", "--forget-older-than", "0")
    assert pruned.exit_code == 0 and "pruned 1 runs (3 rows)" in pruned.output
    assert "pruned" in invoke(server, "runs").output
    refused = invoke(server, "undo", "1")
    assert refused.exit_code == 2 and "pruned" in refused.output
    # The keys stayed: the next night still knows its tasks.
    again = invoke(server, "run", write_rows(tmp_path / "n2.csv", rows), "--key", "Legacy Id",
                   "--json")  # fmt: skip
    assert as_json(again)["counts"] == {"unchanged": 3}
    assert len(server.tasks()) == 3


def test_a_journal_that_cannot_be_written_is_a_clear_usage_error(sandbox, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the journal's folder should be")
    source = write_rows(tmp_path / "j.csv", keyed_rows(2))
    outcome = invoke(sandbox, "run", source, "--state", blocker / "journal.sqlite")
    assert outcome.exit_code == 2
    assert "cannot use the journal" in outcome.output and "--state" in outcome.output
    assert sandbox.tasks() == []


def test_a_journal_of_an_earlier_version_gains_the_lineage_of_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL,
            source TEXT NOT NULL, fingerprint TEXT NOT NULL, options TEXT NOT NULL,
            started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL, results TEXT,
            undoes INTEGER);
        CREATE TABLE rows (run INTEGER NOT NULL, number INTEGER NOT NULL, state TEXT NOT NULL,
            result TEXT, task_id INTEGER, error_code TEXT, field TEXT, message TEXT,
            warnings TEXT, sent_at REAL, params TEXT, key TEXT, PRIMARY KEY (run, number));
        INSERT INTO runs VALUES (1, 'import', 'T', 'a.csv', 'F', '{}', 'x', 'y', 'finished',
            NULL, NULL);
        INSERT INTO rows VALUES (1, 2, 'done', 'created', 41, NULL, NULL, '', '', 1.0, NULL,
            NULL);
        INSERT INTO rows VALUES (1, 3, 'done', 'invalid', NULL, 'BAD_DATE', NULL, '', '', NULL,
            NULL, NULL);
        """
    )
    old.commit()
    old.close()
    with Journal(path) as journal:
        known = journal.known("T")
        assert known.tasks([41, 42]) == {41}
        assert known.lineage("F", [2, 3]) == {2: (41, "")}  # no digest: sent again, an update
        assert journal.run(1).lineage == "F" and journal.run(1).ref is None


def test_undo_of_a_results_sheet_run_touches_only_what_that_run_sent(journal_at, sandbox, tmp_path):
    source = tmp_path / "r.csv"
    source.write_text(
        "Task Name,Due Date\nKept,2026-12-01 10:00\nFixed,31/02/2026\n", encoding="utf-8"
    )
    assert invoke(sandbox, "run", source).exit_code == 1
    results = tmp_path / "r.results.csv"
    results.write_text(
        results.read_text(encoding="utf-8-sig").replace("31/02/2026", "2026-12-02 10:00"),
        encoding="utf-8",
    )
    again = invoke(sandbox, "run", results, "--only", "invalid", "--json")
    assert as_json(again)["counts"] == {"created": 2}  # one kept from run 1, one made now
    planned = invoke(sandbox, "undo", "--plan", "--json")
    assert as_json(planned)["plan"] == {"cancel": 1}
    assert invoke(sandbox, "undo").exit_code == 0
    assert {t["name"]: t["status"] for t in sandbox.tasks()} == {"Kept": 0, "Fixed": 3}


def test_an_update_in_flight_when_its_run_died_is_undone_to_the_task_as_it_was_first(
    journal_at, sandbox, tmp_path
):
    from importer.journal import RunJournal

    from .conftest import call

    state = journal_at("state")
    rows = keyed_rows(1)
    first = invoke(sandbox, "run", write_rows(tmp_path / "n1.csv", rows), "--key", "Legacy Id",
                   "--state", state)  # fmt: skip
    assert first.exit_code == 0, first.output
    task = sandbox.tasks()[0]
    # A run sends the update (status 4: Completed) and is killed before it hears the answer:
    # the journal holds the update in flight, with the task as it was read first; iVvy did it.
    with Journal(state) as journal:
        record = journal.start(kind="import", target=sandbox.credentials.target, source="n2",
                               print_="n2", options={"key": "Legacy Id"})  # fmt: skip
        died = RunJournal(journal, record, key_column="Legacy Id")
        died.in_flight(2, {"id": task["id"], "status": 4}, time.time(), key="L0",
                       before={"status": task["status"], "name": task["name"]})  # fmt: skip
        died.flush()
    call(sandbox, "crm", "addOrUpdateTask", {"id": task["id"], "status": 4})

    rows[0]["Status"] = "Done"
    second = invoke(sandbox, "run", write_rows(tmp_path / "n2.csv", rows), "--key", "Legacy Id",
                    "--state", state, "--json")  # fmt: skip
    assert as_json(second)["counts"] == {"updated": 1}, second.output
    undone = invoke(sandbox, "undo", "--state", state, "--json")
    assert undone.exit_code == 0, undone.output
    assert sandbox.tasks()[0]["status"] == 0  # as it was before the first send, not after


def test_a_keyed_run_whose_journal_was_lost_is_refused_until_told(
    journal_at, make_sandbox, tmp_path
):
    # A nightly job on a worker without a lasting disk: night 2 starts with an empty journal.
    server = make_sandbox()
    rows = keyed_rows(20)
    night1 = write_rows(tmp_path / "night1.csv", rows)
    first = invoke(server, "run", night1, "--key", "Legacy Id", "--state", journal_at("a"))
    assert first.exit_code == 0, first.output
    rows[3]["Status"] = "Done"
    night2 = write_rows(tmp_path / "night2.csv", rows)

    lost = invoke(server, "run", night2, "--key", "Legacy Id", "--state", journal_at("new"))
    assert lost.exit_code == 2, lost.output
    assert "looks lost" in lost.output and "--trust-empty-journal" in lost.output
    assert "--state" in lost.output
    assert len(server.tasks()) == 20  # nothing was sent
    # Pointed at the journal, the night goes as it should.
    found = invoke(server, "run", night2, "--key", "Legacy Id", "--state", journal_at("a"),
                   "--json")  # fmt: skip
    assert as_json(found)["counts"] == {"updated": 1, "unchanged": 19}
    # Told the tasks are not this export's, it creates them (the person's decision).
    told = invoke(server, "run", night2, "--key", "Legacy Id", "--state", journal_at("b"),
                  "--trust-empty-journal", "--json")  # fmt: skip
    assert as_json(told)["counts"] == {"created": 20} and len(server.tasks()) == 40


def test_a_first_keyed_run_into_an_account_without_such_tasks_is_not_refused(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    others = [{**r, "Task Name": f"Other {n}"} for n, r in enumerate(keyed_rows(3))]
    other = write_rows(tmp_path / "other.csv", others)
    assert invoke(server, "run", other, "--state", journal_at("x")).exit_code == 0
    first = invoke(server, "run", write_rows(tmp_path / "n.csv", keyed_rows(5)), "--key",
                   "Legacy Id", "--state", journal_at("k"), "--json")  # fmt: skip
    assert as_json(first)["counts"] == {"created": 5}


def test_max_rejects_lets_a_nightly_run_with_a_few_bad_rows_end_with_exit_0(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(20)
    rows[4]["Due Date"] = "31/02/2026"
    rows[9]["Contact ID"] = "not-a-contact"
    source = write_rows(tmp_path / "n.csv", rows)
    state = ("--state", journal_at("j"))

    def night(*limit: str):
        done = invoke(server, "run", source, "--key", "Legacy Id", *state, "--json", *limit)
        return done.exit_code, as_json(done) if done.output.strip().startswith("{") else None

    code, summary = night("--max-rejects", "2")
    assert code == 0 and summary["rejects"] == 2 and summary["max_rejects"] == "2", summary
    assert summary["counts"] == {"created": 18, "invalid": 2}  # every valid row was sent
    assert night("--max-rejects", "1")[0] == 1
    assert night("--max-rejects", "10%")[0] == 0  # 2 of 20
    assert night("--max-rejects", "5%")[0] == 1
    assert night()[0] == 1  # without a limit, any reject is exit 1
    bad = invoke(server, "run", source, "--key", "Legacy Id", *state, "--max-rejects", "lots")
    assert bad.exit_code == 2 and "a share of them (2%)" in bad.output
    assert len(server.tasks()) == 18


def test_failed_rows_of_a_keyed_run_come_back_by_themselves_and_stubborn_ones_are_flagged(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(5)
    night1 = write_rows(tmp_path / "night1.csv", rows)
    state = ("--state", journal_at("j"))
    assert invoke(server, "run", night1, "--key", "Legacy Id", *state).exit_code == 0
    made = {
        r["Legacy Id"]: int(r["task_id"]) for r in read_results(tmp_path / "night1.results.csv")
    }
    for key in ("L1", "L2"):  # deleted in iVvy: their updates fail (24392) every night
        httpx.delete(f"{server.base_url}/_sandbox/tasks/{made[key]}").raise_for_status()
        rows[int(key[1])]["Status"] = "Done"
    night = write_rows(tmp_path / "night.csv", rows)

    def run(*more: str) -> dict:
        return as_json(invoke(server, "run", night, "--key", "Legacy Id", *state, "--json", *more))

    second = run()
    assert second["counts"] == {"failed": 2, "unchanged": 3} and second["retried"] == 0
    third = run()  # nothing to tell them to: the failed rows are sent again by themselves
    assert third["counts"] == {"failed": 2, "unchanged": 3} and third["retried"] == 2
    assert (
        "2 rows that failed on run 2 were sent again: 0 done, 2 failed again" in third["warnings"]
    )
    assert third["failing_again"] == []  # two runs in a row so far
    fourth = run()
    assert fourth["failing_again"] == [
        {"key": "L1", "error_code": "24392", "runs": 3},
        {"key": "L2", "error_code": "24392", "runs": 3},
    ]
    assert any("failed the same way on 3 runs in a row" in w for w in fourth["warnings"])
    fifth = run("--recreate-missing")
    assert fifth["counts"] == {"created": 2, "unchanged": 3} and fifth["retried"] == 2
    assert "2 done, 0 failed again" in " ".join(fifth["warnings"])
    assert fifth["failing_again"] == [] and len(server.tasks()) == 5


def test_a_keyed_run_after_a_first_one_killed_before_its_keys_were_written_is_not_refused(
    journal_at, make_sandbox, tmp_path
):
    # The first keyed run was killed after sending rows whose keys were not written yet: its
    # journal holds the run and its rows in flight, no key. That journal is not lost: the next
    # run looks the rows up and creates nothing twice.
    from importer.journal import Journal, RunJournal

    server = make_sandbox()
    rows = keyed_rows(4)
    source = write_rows(tmp_path / "n.csv", rows)
    state = journal_at("j")
    made = invoke(server, "run", source, "--key", "Legacy Id", "--state", journal_at("other"))
    assert made.exit_code == 0, made.output
    with Journal(state) as journal:
        record = journal.start(kind="import", target=server.credentials.target, source=str(source),
                               print_="killed", options={"key": "Legacy Id"})  # fmt: skip
        run = RunJournal(journal, record, key_column="Legacy Id")
        run.in_flight(2, {"name": "Task 0"}, 0.0, key="L0")
        run.flush()
    after = invoke(server, "run", source, "--key", "Legacy Id", "--state", state, "--json")
    assert "looks lost" not in after.output, after.output


def test_notify_tells_a_webhook_when_a_night_needs_attention_and_once_when_it_recovers(
    journal_at, make_sandbox, tmp_path
):
    import http.server
    import json as json_module
    import threading

    heard: list[dict] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            heard.append(json_module.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    try:
        server = make_sandbox()
        rows = keyed_rows(6)
        rows[2]["Due Date"] = "31/02/2026"
        source = tmp_path / "nightly.csv"
        state = ("--state", journal_at("j"))

        def night():
            write_rows(source, rows)
            return invoke(server, "run", source, "--key", "Legacy Id", *state, "--notify", url)

        assert night().exit_code == 1 and [h["kind"] for h in heard] == ["attention"]
        said = heard[0]
        assert "needs attention" in said["text"] and "1 invalid" in said["text"]
        assert said["summary"]["counts"] == {"created": 5, "invalid": 1}
        rows[2]["Due Date"] = "2026-12-03 10:00"  # fixed at the source
        assert night().exit_code == 0
        assert [h["kind"] for h in heard] == ["attention", "recovered"]
        assert "done again" in heard[1]["text"]
        assert night().exit_code == 0 and len(heard) == 2  # nothing to tell on a good night
        for message in heard:
            assert server.config.secret not in json_module.dumps(message)
        # A webhook that cannot be reached does not change how the run ends.
        rows[3]["Due Date"] = "nope"
        gone = "http://127.0.0.1:9/hook"  # nothing listens on the discard port
        write_rows(source, rows)
        late = invoke(server, "run", source, "--key", "Legacy Id", *state, "--notify", gone,
                      "--json")  # fmt: skip
        assert late.exit_code == 1 and "the webhook was not told" in " ".join(
            as_json(late)["warnings"]
        )
    finally:
        receiver.shutdown()


def test_max_changes_refuses_a_night_that_would_update_too_many_tasks(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(50)
    state = ("--state", journal_at("j"))
    night1 = write_rows(tmp_path / "night1.csv", rows)
    assert invoke(server, "run", night1, "--key", "Legacy Id", *state).exit_code == 0
    for n in range(5):  # 5 of 50 rows changed: 10%
        rows[n]["Status"] = "Done"
    night2 = write_rows(tmp_path / "night2.csv", rows)
    before = len(sent(server))

    for limit in ("4", "8%"):
        refused = invoke(
            server, "run", night2, "--key", "Legacy Id", *state, "--max-changes", limit
        )
        assert refused.exit_code == 2, refused.output
        assert (
            "would update 5 of 50 tasks" in refused.output and "nothing was sent" in refused.output
        )
    assert len(sent(server)) == before  # nothing was sent
    assert {t["status"] for t in server.tasks()} == {0}
    done = invoke(server, "run", night2, "--key", "Legacy Id", *state, "--max-changes", "10%",
                  "--json")  # fmt: skip
    assert as_json(done)["counts"] == {"updated": 5, "unchanged": 45}
    bad = invoke(server, "run", night2, "--key", "Legacy Id", *state, "--max-changes", "some")
    assert bad.exit_code == 2 and "--max-changes takes a number" in bad.output


@pytest.mark.parametrize("journal_at", ["postgresql"], indirect=True)
def test_many_targets_share_one_postgresql_journal_each_locked_alone(journal_at, sandbox, tmp_path):
    state = journal_at("shared")
    with Journal(state, target="account A"), Journal(state, target="account B"):
        # Another run into A at once is refused, into a third account it is not.
        with Journal(state, target="account C"):
            pass
        try:
            Journal(state, target="account A")
        except UsageError as exc:
            assert "another task-import run is using the journal" in str(exc)
        else:
            raise AssertionError("a second run into account A was let in")
    # Freed with its holders: a run goes ahead, and its rows are in that journal.
    source = write_rows(tmp_path / "a.csv", keyed_rows(3))
    done = invoke(sandbox, "run", source, "--state", state, "--json")
    assert done.exit_code == 0, done.output
    with Journal(state) as journal:
        (record,) = journal.runs(sandbox.credentials.target)
        assert journal.row_counts(record.id) == {"created": 3}


def test_a_postgresql_journal_never_shows_its_password(postgres_server, sandbox, tmp_path):
    from importer.journal import shown_state

    secret_url = "postgresql://importer:s3cret-pw@127.0.0.1:1/jobs?sslmode=disable&password=x"
    assert shown_state(secret_url) == "postgresql://importer@127.0.0.1:1/jobs"
    source = write_rows(tmp_path / "a.csv", keyed_rows(2))
    outcome = invoke(sandbox, "run", source, "--state", secret_url)
    assert outcome.exit_code == 2
    assert "cannot use the PostgreSQL journal postgresql://importer@127.0.0.1:1/jobs" in (
        outcome.output
    )
    assert "s3cret-pw" not in outcome.output and "password=x" not in outcome.output
    assert sandbox.tasks() == []  # nothing sent without a journal
    # Given through the environment (a Kubernetes Secret), as --state's default.
    env = {**env_for(sandbox), "IVVY_STATE": secret_url}
    by_env = CliRunner().invoke(main, ["run", str(source)], env=env)
    assert by_env.exit_code == 2 and "s3cret-pw" not in by_env.output
    assert "postgresql://importer@127.0.0.1:1/jobs" in by_env.output


def test_a_flush_to_postgresql_merges_each_kind_of_insert_and_keeps_each_tables_order():
    from importer.journal._pg import merged, schema
    from importer.journal._schema import _SCHEMA, _SET_LINEAGE

    schema(_SCHEMA)  # the tables' columns, keys and types
    done = ("INSERT INTO rows (run, number, state) VALUES (?, ?, 'done') ON CONFLICT (run, "
            "number) DO UPDATE SET state = excluded.state")  # fmt: skip
    statements = []
    for n in (2, 3, 4):
        statements += [(done, (1, n)), (_SET_LINEAGE, ("t", "o", n, 10 + n, "d", 1, None))]
    statements += [("DELETE FROM rows WHERE run = ? AND number = ?", (1, 3)), (done, (1, 3))]
    out = list(merged(statements))
    # Rows' inserts together, lineage's together; the row done after the delete stays after it.
    assert [sql.split()[2] if sql.startswith("INSERT") else "DELETE" for sql, _ in out] == [
        "rows", "lineage", "DELETE", "rows"
    ]  # fmt: skip
    assert "unnest(%s::bigint[], %s::bigint[])" in out[0][0] and out[0][1] == ([1, 1, 1], [2, 3, 4])
    assert out[1][1][2] == [2, 3, 4] and out[3][1] == (1, 3)
    # Two rows with one key: an upsert may not touch a row twice, so each is its own statement.
    twice = list(merged([(done, (1, 5)), (done, (1, 5))]))
    assert twice == [(twice[0][0], (1, 5))] * 2 and "unnest" not in twice[0][0]


def test_a_row_recorded_twice_in_one_flush_keeps_its_last_outcome(journal_at, tmp_path):
    from importer.journal import RunJournal
    from importer.model import Outcome

    with Journal(journal_at("twice"), target="t") as journal:
        record = journal.start(kind="import", target="t", source="s", print_="p", options={})
        run = RunJournal(journal, record)
        for n in range(2, 12):
            run.in_flight(n, {"name": f"T{n}"}, 0.0)
        run.flush()
        for n in range(2, 12):
            run.done(n, Outcome("created", task_id=n), sent_at=1.0, params={"name": f"T{n}"})
        run.done(5, Outcome("failed", error_code=24395, message="again"))
        run.flush()
        outcomes = dict(run.outcomes())
        assert outcomes[5] is not None and outcomes[5].result == "failed"
        assert journal.row_counts(record.id) == {"created": 9, "failed": 1}
        placed = journal.known("t").lineage(record.lineage, range(2, 12))
        assert sorted(placed) == list(range(2, 12)) and placed[7][0] == 7


@pytest.mark.parametrize("journal_at", ["postgresql"], indirect=True)
def test_what_must_be_known_before_a_row_is_sent_waits_for_the_servers_disk(
    journal_at, monkeypatch
):
    """Rows in flight and a batch's id are committed durably (synchronous_commit as the
    server has it) before anything is sent; outcomes may be committed without waiting: lost
    in a crash of the server, their rows are in flight still, and looked up."""
    from importer.journal import RunJournal
    from importer.journal._pg import PgConnection
    from importer.model import Outcome

    flags: list[bool] = []
    real = PgConnection.write_all

    def write_all(self, statements, *, durable=True):
        flags.append(durable)
        return real(self, statements, durable=durable)

    monkeypatch.setattr(PgConnection, "write_all", write_all)
    with Journal(journal_at("durable"), target="t") as journal:
        record = journal.start(kind="import", target="t", source="s", print_="p", options={})
        run = RunJournal(journal, record)
        run.in_flight(2, {"name": "T"}, 0.0)
        run.flush()
        run.done(2, Outcome("created", task_id=7), sent_at=1.0, params={"name": "T"})
        run.flush()
        run.in_flight(3, {"name": "U"}, 0.0)
        run.batch_sent([3], "job-1")
        run.done(3, Outcome("created", task_id=8), sent_at=1.0, params={"name": "U"})
        run.flush()
        assert journal.row_counts(record.id) == {"created": 2}
    assert flags == [True, False, True, False]


def test_psycopgs_ignored_second_errors_never_reach_the_terminal(caplog):
    """Closing a pipeline on a connection already lost, psycopg logs the error it ignores
    (with no logging set up, Python prints it on stderr): the first error is the one shown."""
    import logging

    import importer.journal._pg  # noqa: F401 (installs the filter)

    with caplog.at_level(logging.WARNING, logger="psycopg"):
        logging.getLogger("psycopg").warning("error ignored terminating %r: %s", "<P>", "lost")
        logging.getLogger("psycopg").warning("something else: %s", "kept")
    assert [r.getMessage() for r in caplog.records] == ["something else: kept"]
