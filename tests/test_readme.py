"""The README's first two commands are what a new user runs: they must work as written."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def first_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_main_job_and_the_tests():
    main_job, tests = first_commands()
    assert "pip install" in main_job and "task-import run sample_data/" in main_job
    assert main_job.endswith("--sandbox")
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    _, tests = first_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci


def test_the_readme_main_job_runs_as_written(tmp_path):
    main_job, _ = first_commands()
    job = main_job.split("&&", 1)[1].strip()
    argv = shlex.split(job)
    assert argv[0] == "task-import"
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    executable = shutil.which("task-import") or sys.executable
    command = (
        [executable, *argv[1:]]
        if executable.endswith("task-import")
        else [sys.executable, "-m", "importer.cli", *argv[1:]]
    )
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # The sample holds rows that are wrong on purpose: exit 1, as the README says.
    assert done.returncode == 1, done.stderr
    source = tmp_path / argv[2]
    results = source.with_name(f"{source.stem}.results.csv")
    with results.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with source.open(encoding="utf-8", newline="") as handle:
        assert len(rows) == len(list(csv.DictReader(handle)))
    assert {r["result"] for r in rows} == {"created", "invalid"}
    assert all(r["task_id"] for r in rows if r["result"] == "created")
    assert "Results:" in done.stdout


def _clean(*command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_code_is_ruff_clean_and_formatted():
    _clean("ruff", "check", "importer", "tests", "benchmarks")
    _clean("ruff", "format", "--check", "importer", "tests", "benchmarks")


def test_the_package_type_checks_and_its_public_api_strictly():
    # pyproject.toml: mypy over importer/, with the strict rules for the public API's modules.
    _clean("mypy")


def test_the_readme_mapping_file_example_loads(tmp_path):
    from importer.map import load_mapping_file, map_columns

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    example = next(b for b in blocks if 'profile = "salesforce"' in b)
    path = tmp_path / "m.toml"
    path.write_text(example, encoding="utf-8")
    mapping_file = load_mapping_file(path)
    assert mapping_file.profile == "salesforce"
    mapping = map_columns(["Task Subject", "When", "Time", "Legacy Owner"], path="x.csv",
                          mapping_file=mapping_file)  # fmt: skip
    assert mapping.columns == {"name": "Task Subject", "endDatetime": "When", "endTime": "Time"}
    assert mapping.options["timezone"] == "Australia/Sydney"


def test_the_readme_config_example_loads(tmp_path, monkeypatch):
    from importer.cli import load_config, main

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    example = next(b for b in blocks if "api_key" in b)
    path = tmp_path / "ivvy.toml"
    path.write_text(example, encoding="utf-8")
    before = dict(os.environ)
    defaults, environ = load_config(path, main)
    assert defaults["run"]["key"] == "Legacy Id" and defaults["run"]["as_json"] is True
    assert environ["IVVY_API_KEY"] == "your-api-key"
    assert dict(os.environ) == before  # the process's environment is not changed


def test_under_ci_a_missing_chromium_fails_the_browser_test_and_elsewhere_skips_it(tmp_path):
    root = Path(__file__).resolve().parent.parent
    missing = str(tmp_path / "no-chromium")

    def browser_tests(ci: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "IVVY_TEST_CHROMIUM": missing, "CI": ci}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "tests/test_serve_browser.py", "-rs"]  # fmt: skip
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)

    in_ci = browser_tests("true")
    assert in_ci.returncode == 1 and "no Chromium" in in_ci.stdout, in_ci.stdout
    local = browser_tests("")
    assert local.returncode == 0 and "skipped" in local.stdout, local.stdout
