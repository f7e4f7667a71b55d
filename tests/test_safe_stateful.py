"""Every path combined: random sequences of runs, runs killed at a random moment (SIGKILL and
SIGINT), ``--resume``, ``--only`` on the latest results sheet, a results sheet edited and run
again, ``--key`` re-runs with edited and new rows. After each step: no row has two tasks, and no
task the tool did not make has changed (checked on what the sandbox holds).

A bounded number of examples runs in the suite (derandomized, so the suite is the same every
time); ``SAFE_EXAMPLES=50 python3 -m pytest tests/test_safe_stateful.py`` runs a longer, random
search (the README's "Safe by default" section says so too).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from importer.cli import main
from importer.sandbox import SandboxConfig, SandboxServer
from importer.sandbox._seed import default_seed

from .test_cli_run import env_for

EXAMPLES = int(os.environ.get("SAFE_EXAMPLES", "2"))
#: Tasks in the account that this tool did not make: no step may change them.
FOREIGN = [
    {"id": 500 + n, "name": f"Task {n}", "description": f"row R{n}",
     "endDatetime": "2026-12-01 10:00:00", "status": 0, "createdDate": "2026-01-01 00:00:00",
     "modifiedDate": "2026-01-01 00:00:00"}
    for n in range(3)
]  # fmt: skip


class SafeByDefault(RuleBasedStateMachine):
    """One sandbox and one journal; the source's rows each carry a marker (``row Rn`` in the
    description, which no edit touches) by which the sandbox's tasks are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.server = SandboxServer(
            SandboxConfig(latency_ms=4, seed={**default_seed(), "tasks": FOREIGN})
        ).start()
        self.folder = Path(os.environ["SAFE_FOLDER"]) / f"m{time.monotonic_ns()}"
        self.folder.mkdir(parents=True)
        self.state = self.folder / "journal.sqlite"
        self.env = {**os.environ, **env_for(self.server)}
        self.steps = 0
        self.rows: list[dict[str, str]] = []
        self.source: Path | None = None
        self.results: Path | None = None
        self.keyed = False

    def teardown(self) -> None:
        self.server.stop()

    # -- helpers --------------------------------------------------------------------------

    def _write_source(self) -> None:
        self.steps += 1
        self.source = self.folder / f"source-{self.steps}.csv"
        _write(self.source, self.rows)

    def _args(self, source: Path, *more: str) -> list[str]:
        self.steps += 1
        results = self.folder / f"results-{self.steps}.csv"
        args = ["run", str(source), "--state", str(self.state), "--results", str(results),
                "--settle-s", "0.3", "--concurrency", "4", *more]  # fmt: skip
        if self.keyed and source == self.source:
            # The account's foreign tasks look like the first rows: a first keyed run into it
            # is refused as a lost journal unless told they are not this export's.
            args += ["--key", "Legacy", "--trust-empty-journal"]
        self._pending_results = results
        if os.environ.get("SAFE_VERBOSE"):
            print(" ".join(a.rsplit("/", 1)[-1] for a in args[1:]), file=sys.stderr)
        return args

    def _after(self) -> None:
        if self._pending_results.exists():
            self.results = self._pending_results

    def _cli(self, args: list[str]) -> Any:
        outcome = CliRunner().invoke(main, args, env=self.env)
        assert outcome.exit_code in (0, 1, 2, 130), outcome.output
        assert outcome.exception is None or isinstance(outcome.exception, SystemExit), (
            outcome.output
        )
        self._after()
        return outcome

    # -- rules ----------------------------------------------------------------------------

    @initialize(count=st.integers(10, 40), keyed=st.booleans())
    def start(self, count: int, keyed: bool) -> None:
        self.keyed = keyed
        self.rows = [_row(n) for n in range(count)]
        self._write_source()

    @rule(new_run=st.booleans())
    def run(self, new_run: bool) -> None:
        assert self.source is not None
        self._cli(self._args(self.source, *(["--new-run"] if new_run else [])))

    @rule(after=st.integers(0, 40), how=st.sampled_from(["SIGKILL", "SIGINT"]))
    def run_killed(self, after: int, how: str) -> None:
        assert self.source is not None
        argv = [sys.executable, "-m", "importer.cli", *self._args(self.source, "--new-run")]
        before = len(self.server.tasks())
        process = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while len(self.server.tasks()) < before + after and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(getattr(signal, how))
        process.wait(timeout=30)
        self._after()

    @rule()
    def resume(self) -> None:
        assert self.source is not None
        self._cli(self._args(self.source, "--resume"))

    @precondition(lambda self: self.results is not None)
    @rule(only=st.sets(st.sampled_from(["failed", "skipped", "invalid", "created"]), min_size=1))
    def only_on_latest_results(self, only: set[str]) -> None:
        assert self.results is not None
        self._cli(self._args(self.results, "--only", ",".join(sorted(only))))

    @precondition(lambda self: self.results is not None)
    @rule(which=st.integers(0, 10_000))
    def edit_results_and_run(self, which: int) -> None:
        assert self.results is not None
        rows = _read(self.results)
        if not rows:
            return
        row = rows[which % len(rows)]
        row["Task Name"] = row["Task Name"] + " (edited)"
        edited = self.folder / f"edited-{self.steps}.csv"
        _write(edited, rows)
        self._cli(self._args(edited))

    @precondition(lambda self: self.keyed)
    @rule(edit=st.integers(0, 10_000), new=st.integers(0, 5))
    def key_rerun_with_edited_and_new_rows(self, edit: int, new: int) -> None:
        row = self.rows[edit % len(self.rows)]
        row["Task Name"] += " (nightly)"
        self.rows += [_row(len(self.rows) + n) for n in range(new)]
        self._write_source()
        assert self.source is not None
        self._cli(self._args(self.source))

    # -- what must hold -------------------------------------------------------------------

    @invariant()
    def no_row_has_two_tasks_and_no_foreign_task_changed(self) -> None:
        tasks = self.server.tasks()
        ours = Counter(t["description"] for t in tasks if t["id"] not in {f["id"] for f in FOREIGN})
        assert all(n == 1 for n in ours.values()), [d for d, n in ours.items() if n > 1]
        held = {t["id"]: t for t in tasks}
        for foreign in FOREIGN:
            task = held[foreign["id"]]
            assert task["name"] == foreign["name"] and task["status"] == 0, task
            assert task["modifiedDate"].startswith(foreign["modifiedDate"]), task


def _row(n: int) -> dict[str, str]:
    # Names alike the foreign tasks' ("Task 0"…): a look-up must not take theirs for ours.
    return {"Legacy": f"L{n}", "Task Name": f"Task {n}", "Due Date": "2026-12-01 10:00",
            "Notes": f"row R{n}"}  # fmt: skip


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_path_combined_keeps_one_task_per_row(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFE_FOLDER", str(tmp_path))
    run_state_machine_as_test(
        SafeByDefault,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=EXAMPLES <= 2,
            database=None,
            verbosity=Verbosity.verbose if os.environ.get("SAFE_VERBOSE") else Verbosity.normal,
        ),
    )


def test_every_path_in_turn_keeps_one_task_per_row(tmp_path, monkeypatch):
    """The same machine through one sequence that takes every path, both kinds of kill first
    (the random search above is bounded: this one always goes everywhere)."""
    monkeypatch.setenv("SAFE_FOLDER", str(tmp_path))
    for keyed in (False, True):
        machine = SafeByDefault()
        try:
            machine.start(40, keyed)
            steps: list[tuple[str, tuple[Any, ...]]] = [
                ("run_killed", (8, "SIGKILL")),
                ("run_killed", (16, "SIGINT")),
                ("only_on_latest_results", ({"failed", "skipped"},)),
                ("resume", ()),
                ("run_killed", (4, "SIGKILL")),
                ("edit_results_and_run", (3,)),
                ("run", (True,)),
            ]
            if keyed:
                steps.append(("key_rerun_with_edited_and_new_rows", (5, 3)))
                steps.append(("only_on_latest_results", ({"created", "failed"},)))
            for name, args in steps:
                getattr(machine, name)(*args)
                machine.no_row_has_two_tasks_and_no_foreign_task_changed()
            made = [t for t in machine.server.tasks() if t["id"] not in {f["id"] for f in FOREIGN}]
            assert len(made) == len(machine.rows)  # and, in the end, every row has its task
        finally:
            machine.teardown()
