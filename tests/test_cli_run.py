"""``task-import run`` and ``ping`` end to end, over the sandbox on loopback."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from importer.cli import main

from .conftest import sent

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "tasks.csv"


def env_for(server):
    return {
        "IVVY_BASE_URL": server.base_url,
        "IVVY_API_KEY": server.config.key,
        "IVVY_API_SECRET": server.config.secret,
    }


def read_results(path: Path) -> list[dict[str, str]]:
    """The results sheet's rows, every cell as text (as the CSV has them)."""
    if path.suffix == ".xlsx":
        book = openpyxl.load_workbook(path, read_only=True)
        rows = list(book["Results"].iter_rows(values_only=True))
        book.close()
        headers = [str(h) for h in rows[0]]
        return [
            {h: "" if v is None else str(v) for h, v in zip(headers, row, strict=True)}
            for row in rows[1:]
        ]
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_run_writes_results_whose_ids_exist_in_the_sandbox(sandbox, tmp_path):
    results = tmp_path / "out.csv"
    outcome = CliRunner().invoke(
        main, ["run", str(SAMPLE), "--results", str(results), "--json"], env=env_for(sandbox)
    )
    assert outcome.exit_code == 1, outcome.output  # the sample has rows meant to fail
    summary = json.loads(outcome.stdout)
    rows = read_results(results)
    assert len(rows) == summary["rows"] == 20
    assert [int(r["row"]) for r in rows] == list(range(2, 22))
    created = {int(r["task_id"]): r for r in rows if r["result"] == "created"}
    stored = {t["id"]: t for t in sandbox.tasks()}
    assert set(created) == set(stored) and len(created) == 15
    for task_id, row in created.items():
        assert stored[task_id]["name"] == row["name"]
    codes = {r["row"]: (r["result"], r["error_code"], r["field"]) for r in rows if r["error_code"]}
    assert codes == {
        "9": ("invalid", "23017", "venueId"),  # found by the online checks, before sending
        "10": ("invalid", "24390", "contactId"),
        "11": ("invalid", "24396", "contactId"),
        "12": ("invalid", "23017", "endDatetime"),
        "13": ("invalid", "23016", "priority"),
    }
    assert summary["counts"] == {"created": 15, "invalid": 5}
    assert sandbox.stats()["by_action"]["crm.addOrUpdateTask"] == 15  # the invalid were not sent


def test_run_with_embedded_sandbox(tmp_path):
    source = write_csv(
        tmp_path / "t.csv",
        "name,endDatetime,contactId\nA,2026-12-01 09:00,1\nB,2026-12-02,2\n",
    )
    outcome = CliRunner().invoke(main, ["run", str(source), "--sandbox"], env={"IVVY_API_KEY": ""})
    assert outcome.exit_code == 0, outcome.output
    rows = read_results(tmp_path / "t.results.csv")
    assert [(r["result"], r["task_id"]) for r in rows] == [("created", "1"), ("created", "2")]
    assert "2 rows" in outcome.output


def test_cells_that_would_start_a_formula_are_neutralised_in_results(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "f.csv", 'name,endDatetime\n"=HYPERLINK(""x"")",2026-12-01\n+1+1,2026-12-01\n'
    )
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env_for(sandbox))
    assert outcome.exit_code == 0, outcome.output
    rows = read_results(tmp_path / "f.results.csv")
    assert [r["name"] for r in rows] == ['\'=HYPERLINK("x")', "'+1+1"]
    assert [p["name"] for p in sent(sandbox)] == ['=HYPERLINK("x")', "+1+1"]
    assert len(sandbox.tasks()) == 2


def test_unreadable_source_is_exit_2_and_sends_nothing(sandbox, tmp_path):
    source = write_csv(tmp_path / "bad.csv", "name,endDatetime\nA,2026-12-01,extra\n")
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env_for(sandbox))
    assert outcome.exit_code == 2
    assert "bad.csv, row 2, column 'C'" in outcome.stderr
    assert sandbox.stats()["requests"] == 0
    assert not (tmp_path / "bad.results.csv").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("name,endDatetime\n", "no data rows"),
        ("name,name\nA,B\n", "duplicate header"),
        ("label,remark\nA,B\n", "no column for name, endDatetime"),
    ],
)
def test_sources_that_cannot_be_imported_are_exit_2(sandbox, tmp_path, text, message):
    source = write_csv(tmp_path / "s.csv", text)
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env_for(sandbox))
    assert outcome.exit_code == 2
    assert message in outcome.stderr
    assert "Traceback" not in outcome.output


def test_a_run_refused_with_json_ends_stdout_with_a_json_line_saying_why(sandbox, tmp_path):
    source = write_csv(tmp_path / "s.csv", "label,remark\nA,B\n")
    outcome = CliRunner().invoke(main, ["run", str(source), "--json"], env=env_for(sandbox))
    assert outcome.exit_code == 2
    last = json.loads(outcome.stdout.strip().splitlines()[-1])
    assert last["exit_code"] == 2 and "no column for name, endDatetime" in last["error"]
    assert "no column for name, endDatetime" in outcome.stderr


def test_options_that_contradict_each_other_are_a_usage_error_not_an_unexpected_one(
    sandbox, tmp_path
):
    source = write_csv(tmp_path / "t.csv", "name,endDatetime\nA,2026-12-01\n")
    args = ["run", str(source), "--resume", "--new-run", "--json"]
    outcome = CliRunner().invoke(main, args, env=env_for(sandbox))
    assert outcome.exit_code == 2, outcome.output
    assert "Error: --resume goes on with a run" in outcome.stderr
    assert "unexpected error" not in outcome.output
    assert json.loads(outcome.stdout.strip().splitlines()[-1])["exit_code"] == 2
    assert sandbox.stats()["requests"] == 0


def test_unreachable_api_is_exit_3(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = write_csv(tmp_path / "t.csv", "name,endDatetime\nA,2026-12-01\n")
    env = {"IVVY_BASE_URL": f"http://127.0.0.1:{port}", "IVVY_API_KEY": "k", "IVVY_API_SECRET": "s"}
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env)
    assert outcome.exit_code == 3
    assert "cannot reach iVvy" in outcome.stderr


def test_refused_credentials_are_exit_3_and_never_show_the_secret(sandbox, tmp_path):
    source = write_csv(tmp_path / "t.csv", "name,endDatetime\nA,2026-12-01\n")
    env = {**env_for(sandbox), "IVVY_API_SECRET": "wrong-secret-123"}
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env)
    assert outcome.exit_code == 3
    assert "refused the credentials" in outcome.stderr
    assert "wrong-secret-123" not in outcome.output
    assert sandbox.tasks() == []


def test_missing_credentials_are_exit_2(tmp_path):
    source = write_csv(tmp_path / "t.csv", "name,endDatetime\nA,2026-12-01\n")
    env = {"IVVY_API_KEY": "", "IVVY_API_SECRET": ""}
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env)
    assert outcome.exit_code == 2
    assert "IVVY_API_KEY and IVVY_API_SECRET not set" in outcome.stderr


def test_ping_ok_and_refused(sandbox):
    outcome = CliRunner().invoke(main, ["ping"], env=env_for(sandbox))
    assert outcome.exit_code == 0 and outcome.stdout.startswith("OK:")
    bad = CliRunner().invoke(main, ["ping"], env={**env_for(sandbox), "IVVY_API_KEY": "nobody"})
    assert bad.exit_code == 3


def test_ping_shows_the_servers_time_and_says_when_the_clocks_disagree(make_sandbox):
    server = make_sandbox(clock_skew_s=-1200)  # iVvy's clock 20 minutes behind ours
    outcome = CliRunner().invoke(main, ["ping"], env=env_for(server))
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.startswith("OK:") and " UTC" not in outcome.stdout.split("(")[0]
    assert "ahead of iVvy's" in outcome.stderr


def test_ping_embedded_sandbox():
    outcome = CliRunner().invoke(main, ["ping", "--sandbox"])
    assert outcome.exit_code == 0, outcome.output
