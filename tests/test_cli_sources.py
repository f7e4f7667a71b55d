"""``task-import run`` over workbooks, profiles, mapping files and time zones, into the sandbox."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime

import openpyxl
from click.testing import CliRunner

from importer.cli import main

from .conftest import sent
from .test_cli_run import env_for, read_results, write_csv


def run(sandbox, *args):
    return CliRunner().invoke(main, ["run", *map(str, args), "--json"], env=env_for(sandbox))


def by_name(sandbox):
    """What was sent for each task name (the sandbox shows stored text as iVvy does: HTML)."""
    return {params["name"]: params for params in sent(sandbox)}


def test_xlsx_with_a_title_row_native_dates_and_a_chosen_sheet(sandbox, tmp_path):
    workbook = openpyxl.Workbook()
    notes = workbook.active
    notes.title = "Notes"
    notes.append(["This workbook holds the December tasks"])
    sheet = workbook.create_sheet("Tasks")
    sheet.append(["December tasks"])
    sheet.append([])
    sheet.append(["Task Name", "Due Date", "Contact ID", "Priority", "Status"])
    sheet.append(["Call", datetime(2026, 12, 1, 14, 30), 12, "High", "In progress"])
    sheet.append(["Mail", date(2026, 12, 2), 13.0, "normal", "Done"])
    sheet.append(["Bad", "31/02/2026", 14, "low", "open"])
    path = tmp_path / "tasks.xlsx"
    workbook.save(path)

    outcome = run(sandbox, path, "--sheet", "Tasks", "--timezone", "Australia/Sydney")
    assert outcome.exit_code == 1, outcome.output
    rows = read_results(tmp_path / "tasks.results.xlsx")
    assert [(r["row"], r["result"]) for r in rows] == [
        ("4", "created"), ("5", "created"), ("6", "invalid"),
    ]  # fmt: skip
    assert (rows[2]["error_code"], rows[2]["field"]) == ("BAD_DATE", "Due Date")
    assert rows[0]["Due Date"] == "2026-12-01 14:30:00"  # the cell, as it was
    tasks = by_name(sandbox)
    call, mail = tasks["Call"], tasks["Mail"]
    assert (call["endDatetime"], call["priority"], call["status"], call["contactId"]) == (
        "2026-12-01 03:30:00", "high", 1, 12,
    )  # fmt: skip
    assert (mail["endDatetime"], mail["priority"], mail["status"]) == (
        "2026-12-01 22:00:00", "medium", 4,
    )  # fmt: skip


def test_salesforce_export_with_profile(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "sf.csv",
        "Id,Subject,ActivityDate,Status,Priority,Description,OwnerId\n"
        "00T000000000001AAA,Call back,2026-12-01,Waiting on someone else,Normal,Gala,005A\n"
        "00T000000000002AAA,Send quote,2026-12-02,Completed,High,,005B\n",
    )
    outcome = run(sandbox, source, "--profile", "salesforce")
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert any("--key 'Id'" in w for w in summary["warnings"])
    assert any("'OwnerId' holds Salesforce ids, not iVvy ids" in w for w in summary["warnings"])
    tasks = by_name(sandbox)
    assert (tasks["Call back"]["status"], tasks["Call back"]["priority"]) == (2, "medium")
    assert tasks["Send quote"]["status"] == 4
    rows = read_results(tmp_path / "sf.results.csv")
    assert rows[0]["Id"] == "00T000000000001AAA"  # the legacy id stays in the results


def test_mapping_file_with_words_and_options(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "hand.csv",
        "Job,When,Who,State\nFix AV,03/04/2026 10:00,12,Parked\nBook room,25/04/2026,13,Urgent\n",
    )
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        '[columns]\nJob = "name"\nWhen = "endDatetime"\nWho = "contactId"\nState = "status"\n'
        '[status]\nParked = "On Hold"\n[options]\ntimezone = "Europe/London"\n',
        encoding="utf-8",
    )
    outcome = run(sandbox, source, "--mapping", mapping)
    assert outcome.exit_code == 1, outcome.output
    rows = read_results(tmp_path / "hand.results.csv")
    assert [r["result"] for r in rows] == ["created", "invalid"]
    assert rows[1]["error_code"] == "23016" and rows[1]["field"] == "State"
    task = by_name(sandbox)["Fix AV"]
    # Day-first, decided by 25/04 lower down; London is on BST in April (+1).
    assert (task["endDatetime"], task["status"]) == ("2026-04-03 09:00:00", 2)


def test_ambiguous_dates_without_evidence_are_refused_and_date_order_fixes_them(sandbox, tmp_path):
    source = write_csv(tmp_path / "d.csv", "name,due\nA,03/04/2026\nB,05/06/2026\n")
    outcome = run(sandbox, source)
    rows = read_results(tmp_path / "d.results.csv")
    assert {r["error_code"] for r in rows} == {"BAD_DATE"}
    assert "ambiguous" in rows[0]["message"]
    assert outcome.exit_code == 1
    outcome = run(sandbox, source, "--date-order", "mdy", "--default-time", "17:30")
    assert outcome.exit_code == 0, outcome.output
    assert by_name(sandbox)["A"]["endDatetime"] == "2026-03-04 17:30:00"


def test_timezone_venue_takes_the_zone_of_the_venue(sandbox, tmp_path):
    source = write_csv(tmp_path / "v.csv", "name,due\nA,2026-07-01 09:00\n")
    outcome = run(sandbox, source, "--timezone", "venue", "--venue-id", "3")
    assert outcome.exit_code == 0, outcome.output
    assert by_name(sandbox)["A"]["endDatetime"] == "2026-07-01 08:00:00"  # London, BST
    missing = run(sandbox, source, "--timezone", "venue", "--venue-id", "99")
    assert missing.exit_code == 2 and "venue 99 does not exist" in missing.stderr


def test_unknown_timezone_is_exit_2(sandbox, tmp_path):
    source = write_csv(tmp_path / "v.csv", "name,due\nA,2026-07-01 09:00\n")
    outcome = run(sandbox, source, "--timezone", "Mars/Olympus")
    assert outcome.exit_code == 2 and "unknown time zone 'Mars/Olympus'" in outcome.stderr
    assert sandbox.stats()["requests"] == 0


def test_warnings_are_printed_and_reach_the_results(sandbox, tmp_path):
    source = write_csv(tmp_path / "w.csv", "name,due,Priorty\nA,2026-12-01,high\nB,25/12/26,low\n")
    outcome = CliRunner().invoke(main, ["run", str(source)], env=env_for(sandbox))
    assert "warning: column 'Priorty' is not imported" in outcome.stderr
    assert "did you mean 'priority'?" in outcome.stderr
    with (tmp_path / "w.results.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert "two-digit year" in rows[1]["warnings"]


def test_a_cp1252_semicolon_file_imports_right(sandbox, tmp_path):
    path = tmp_path / "legacy.csv"
    path.write_bytes("name;due\n“Café” call;2026-12-01\n".encode("cp1252"))
    outcome = CliRunner().invoke(main, ["run", str(path)], env=env_for(sandbox))
    assert outcome.exit_code == 0, outcome.output
    assert "read as cp1252" in outcome.stderr
    assert [p["name"] for p in sent(sandbox)] == ["“Café” call"]
    assert len(sandbox.tasks()) == 1
