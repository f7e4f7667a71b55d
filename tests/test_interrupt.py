"""Ctrl-C (SIGINT) during a run: no new rows, rows in flight finish, results say what is known."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

from .test_cli_run import env_for, read_results


def _run_under_way(server, tmp_path, rows: int, concurrency: int, made: int):
    """A run of ``rows`` tasks into ``server`` in a process of its own, once ``made`` tasks
    are in the sandbox: the process, its command and its environment."""
    source = tmp_path / "slow.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "endDatetime"])
        writer.writerows([f"Task {n}", "2026-12-01 09:00"] for n in range(rows))
    command = [sys.executable, "-m", "importer.cli", "run", str(source),
               "--concurrency", str(concurrency), "--settle-s", "0.5"]  # fmt: skip
    env = {**os.environ, **env_for(server)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while len(server.tasks()) < made:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended too soon"
        time.sleep(0.02)
    return process, command, env


def test_sigint_stops_taking_rows_and_reports_only_what_is_known(make_sandbox, tmp_path):
    server = make_sandbox(latency_ms=20)
    process, command, env = _run_under_way(server, tmp_path, 800, concurrency=4, made=30)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "stopping: no new rows" in stderr
    rows = read_results(tmp_path / "slow.results.csv")
    assert len(rows) == 800  # every row once, in order
    results = {r["result"] for r in rows}
    assert results <= {"created", "skipped", "failed"}
    created = {int(r["task_id"]) for r in rows if r["result"] == "created"}
    stored = {t["id"] for t in server.tasks()}
    # Nothing half-known reported as done: every "created" is stored, and whatever is stored
    # beyond them belongs to rows reported as interrupted, never to rows reported skipped.
    assert created <= stored
    interrupted = [r for r in rows if r["error_code"] == "INTERRUPTED"]
    assert len(stored - created) <= len(interrupted)
    assert any(r["result"] == "skipped" for r in rows)

    # The journal holds where it stopped: --resume sends the rest, each row once.
    resumed = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    names = [t["name"] for t in server.tasks()]
    assert len(names) == 800 and len(set(names)) == 800
    rows = read_results(tmp_path / "slow.results.csv")
    assert {r["result"] for r in rows} == {"created"}
    assert {int(r["task_id"]) for r in rows} == {t["id"] for t in server.tasks()}


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(make_sandbox, tmp_path):
    """The first Ctrl-C lets the rows in flight finish; a second, right after, stops at once:
    exit 130, one line on what happened, no traceback ("exception was never retrieved"), and
    --resume still sends each row once."""
    server = make_sandbox(latency_ms=300)
    process, command, env = _run_under_way(server, tmp_path, 160, concurrency=8, made=16)
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)  # inside the grace: rows are in flight (each answer takes 300 ms)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    resumed = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    names = [t["name"] for t in server.tasks()]
    assert len(names) == 160 and len(set(names)) == 160
