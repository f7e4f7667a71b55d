"""The results sheet: XLSX and CSV, formulas neutralised, read back as a source with --only."""

from __future__ import annotations

import json
import re
from datetime import datetime

import openpyxl
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from importer.cli import main
from importer.results import neutralise, unneutralise

from .conftest import sent
from .test_cli_run import env_for, read_results, write_csv

DANGEROUS = ["=1+2", "+1+2", "-1-A1", "@SUM(A1)", "\tx", "\rx", "'=x", "''+y"]
#: Text a spreadsheet reads as a number, never as a formula: kept as it is.
NUMBERS = ["-1.00", "+1", "-5", "-.5", "1e-3", "-2E+4"]


def invoke(server, *args: object):
    return CliRunner().invoke(main, [*map(str, args)], env=env_for(server))


@given(st.text() | st.sampled_from(NUMBERS + DANGEROUS) | st.from_regex(r"'*[+-]?[0-9.eE+-]*"))
def test_neutralise_is_undone_exactly_and_never_leaves_a_formula_start(text):
    written = neutralise(text)
    plain = re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text) is not None
    assert plain or not written.startswith(("=", "+", "-", "@", "\t", "\r", "\0"))
    assert unneutralise(written) == text


def test_a_plain_number_is_never_prefixed():
    assert [neutralise(n) for n in NUMBERS] == NUMBERS
    assert [neutralise(d) for d in DANGEROUS] == ["'" + d for d in DANGEROUS]


def test_xlsx_results_have_numbers_text_a_summary_and_errors(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "t.csv",
        "Task Name,Due Date,Contact ID,Code\n"
        "Call,2026-12-01 10:00,12,007\n"
        "Ghost contact,2026-12-01 10:00,999999,008\n"
        "Bad date,31/02/2026,12,009\n"
        "=1+2,2026-12-02,12,-5\n",
    )
    results = tmp_path / "out" / "t.results.xlsx"
    results.parent.mkdir()
    outcome = invoke(sandbox, "run", source, "--results", results, "--json")
    assert outcome.exit_code == 1, outcome.output
    assert json.loads(outcome.stdout)["results"] == str(results)
    book = openpyxl.load_workbook(results)
    assert book.sheetnames == ["Results", "Summary", "Errors"]
    sheet = book["Results"]
    header = [c.value for c in sheet[1]]
    assert header == ["Task Name", "Due Date", "Contact ID", "Code", "row", "result", "task_id",
                      "error_code", "field", "message", "warnings", "run_ref"]  # fmt: skip
    rows = [[c for c in r] for r in sheet.iter_rows(min_row=2)]
    assert len(rows) == 4
    call, ghost, bad, formula = rows
    assert call[3].value == "007" and call[3].data_type == "s"  # text stays text
    assert isinstance(call[4].value, int) and isinstance(call[6].value, int)  # row, task_id
    assert call[5].value == "created"
    assert ghost[7].value == 24390 and ghost[8].value == "Contact ID"  # codes are numbers
    assert bad[7].value == "BAD_DATE"
    assert formula[0].value == "=1+2" and formula[0].data_type == "s"  # text, never run
    assert formula[3].value == "-5"
    assert all(c.data_type != "f" for r in rows for c in r)  # no formula anywhere
    assert {p["name"] for p in sent(sandbox)} == {"Call", "=1+2"}  # sent as written

    summary = dict(book["Summary"].iter_rows(min_row=2, values_only=True))
    assert summary["rows created"] == 2 and summary["rows invalid"] == 2
    assert summary["rows"] == 4
    assert isinstance(summary["started (UTC)"], datetime)
    assert "sandbox-key" in summary["target"]
    assert all(sandbox.config.secret not in str(v) for v in summary.values())
    errors = {code: (n, meaning) for code, n, meaning in
              book["Errors"].iter_rows(min_row=2, values_only=True)}  # fmt: skip
    assert errors[24390][0] == 1 and "contact" in errors[24390][1]
    assert errors["BAD_DATE"][0] == 1 and "YYYY-MM-DD" in errors["BAD_DATE"][1]
    # The shape of the run at a glance: openpyxl's bar charts of the rows by result and by
    # code, beside the Summary's table, drawn from the cells that hold those numbers.
    charts = book["Summary"]._charts
    drawn = {c.title.tx.rich.p[0].r[0].t: c for c in charts}
    assert set(drawn) == {"Rows by result", "Rows by error code"}
    by_result = drawn["Rows by result"].series[0]
    assert by_result.val.numRef.f == "'Summary'!$B$2:$B$3"  # rows created, rows invalid
    assert by_result.cat.strRef.f == "'Summary'!$A$2:$A$3"
    assert [book["Summary"][f"A{n}"].value for n in (2, 3)] == ["rows created", "rows invalid"]
    assert drawn["Rows by error code"].series[0].val.numRef.f == "'Errors'!$B$2:$B$3"


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_every_dangerous_start_is_neutralised(sandbox, tmp_path, suffix):
    lines = "\n".join(f'"{text}",2026-12-01' for text in DANGEROUS)
    source = write_csv(tmp_path / "d.csv", f"name,endDatetime\n{lines}\n")
    results = tmp_path / f"d.results{suffix}"
    outcome = invoke(sandbox, "run", source, "--results", results)
    assert outcome.exit_code == 0, outcome.output
    written = [r["name"] for r in read_results(results)]
    if suffix == ".csv":
        assert written == ["'" + text for text in DANGEROUS]
    else:  # a text cell of XLSX is never evaluated: only text already quoted gains one more
        book = openpyxl.load_workbook(results)
        assert all(c.data_type != "f" for r in book["Results"].iter_rows() for c in r)
        expected = ["'" + t if t.startswith("'") else t for t in DANGEROUS]
        expected[5] = "\nx"  # XML holds no lone CR: it is a line feed there, harmless
        assert written == expected
    # Sent as written (names are trimmed of spaces around them, as every text field is).
    assert sorted(p["name"] for p in sent(sandbox)) == sorted(t.strip() for t in DANGEROUS)
    assert len(sandbox.tasks()) == len(DANGEROUS)


def test_a_results_sheet_fixed_by_hand_is_sent_again_with_only(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "t.csv",
        "Task Name,Due Date,Contact ID\n"
        "Good,2026-12-01 10:00,12\n"
        "Ghost,2026-12-01 10:00,999999\n"
        "Bad date,31/02/2026,12\n"
        "=Formula,2026-12-03 10:00,12\n",
    )
    results = tmp_path / "t.results.xlsx"
    assert invoke(sandbox, "run", source, "--results", results).exit_code == 1
    created = {t["name"]: t["id"] for t in sandbox.tasks()}
    assert set(created) == {"Good", "=Formula"}

    book = openpyxl.load_workbook(results)
    sheet = book["Results"]
    sheet["C3"] = 13  # the contact that exists
    sheet["B4"] = "2026-02-28 10:00"
    sheet["A2"] = "Good, renamed"  # picked by nobody: --only leaves it alone
    book.save(results)

    fixed = tmp_path / "t.fixed.xlsx"
    again = invoke(sandbox, "run", results, "--only", "failed,invalid", "--results", fixed)
    assert again.exit_code == 0, again.output
    assert "did you mean" not in again.output  # the result columns are not mapped
    tasks = {t["name"]: t for t in sandbox.tasks()}
    assert set(tasks) == {"Good", "=Formula", "Ghost", "Bad date"}
    assert tasks["Ghost"]["contactId"] == 13
    rows = read_results(fixed)
    assert [r["result"] for r in rows] == ["created"] * 4
    assert int(rows[0]["task_id"]) == created["Good"] and "not picked" in rows[0]["warnings"]
    assert rows[3]["Task Name"] == "=Formula"  # as it was: a text cell, never a formula
    fixed_book = openpyxl.load_workbook(fixed)
    assert all(c.data_type != "f" for r in fixed_book["Results"].iter_rows() for c in r)
    headers = list(rows[0])
    assert headers.count("result") == 1 and "import_result" not in headers

    # Rows with a task_id are that task's: sending every row again updates the one edited
    # since, leaves the others unchanged, creates nothing.
    everything = invoke(sandbox, "run", fixed, "--results", tmp_path / "t.all.csv")
    assert everything.exit_code == 0, everything.output
    assert [r["result"] for r in read_results(tmp_path / "t.all.csv")] == [
        "updated", "unchanged", "unchanged", "unchanged"
    ]  # fmt: skip
    assert len(sandbox.tasks()) == 4
    assert {t["name"] for t in sandbox.tasks()} >= {"Good, renamed"}


def test_only_needs_a_results_sheet_and_known_results(sandbox, tmp_path):
    source = write_csv(tmp_path / "t.csv", "name,endDatetime\nA,2026-12-01\n")
    plain = invoke(sandbox, "run", source, "--only", "failed")
    assert plain.exit_code == 2 and "not a results sheet" in plain.output
    unknown = invoke(sandbox, "run", source, "--only", "broken")
    assert unknown.exit_code == 2 and "broken" in unknown.output
    wrong = invoke(sandbox, "run", source, "--results", tmp_path / "r.json")
    assert wrong.exit_code == 2 and ".xlsx or .csv" in wrong.output
    assert sandbox.stats()["requests"] == 0 or sandbox.tasks() == []


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_crash_while_writing_leaves_no_sheet_and_no_temporary_file(tmp_path, suffix):
    from importer.model import Outcome, Row
    from importer.results import open_results

    path = tmp_path / f"r{suffix}"
    with pytest.raises(RuntimeError), open_results(path, ["name"]) as sheet:
        sheet.add(Row(2, {"name": "A"}), Outcome("created", task_id=1))
        raise RuntimeError("killed while writing")
    assert list(tmp_path.iterdir()) == []
    path.write_text("the earlier results")
    with pytest.raises(RuntimeError), open_results(path, ["name"]) as sheet:
        raise RuntimeError("killed while writing")
    assert path.read_text() == "the earlier results"  # the earlier sheet stays whole


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_kept_values_come_back_as_they_were_in_the_results(tmp_path, suffix):
    """tests/data/kept-values.csv: a negative amount is a number, not a formula, and is kept as
    it is; in XLSX no text is evaluated, so only text already starting with a quote gains
    one; in CSV only what a spreadsheet would evaluate is prefixed. Read back, every cell is
    what the source held."""
    from importer._api import results_rows

    from .conftest import REPOSITORY

    source = tmp_path / "kept-values.csv"
    source.write_bytes((REPOSITORY / "tests" / "data" / "kept-values.csv").read_bytes())
    results = tmp_path / f"kept.results{suffix}"
    outcome = CliRunner().invoke(
        main, ["validate", str(source), "--offline", "--results", str(results)]
    )
    assert outcome.exit_code == 0, outcome.output
    (row,) = read_results(results)
    kept = {k: row[k] for k in ("Amount", "Phone", "Formula", "Quoted")}
    if suffix == ".csv":
        assert kept == {"Amount": "-1.00", "Phone": "'+61 2 9999 0000",
                        "Formula": "'=SUM(A1:A2)", "Quoted": "''-3"}  # fmt: skip
    else:
        assert kept == {"Amount": "-1.00", "Phone": "+61 2 9999 0000",
                        "Formula": "=SUM(A1:A2)", "Quoted": "''-3"}  # fmt: skip
        book = openpyxl.load_workbook(results)
        assert all(c.data_type != "f" for r in book.worksheets[0].iter_rows() for c in r)
    (back,) = results_rows(results)
    assert {k: back.cells[k] for k in kept} == {
        "Amount": "-1.00", "Phone": "+61 2 9999 0000", "Formula": "=SUM(A1:A2)", "Quoted": "'-3"
    }  # fmt: skip


def test_the_xlsx_writer_keeps_every_kind_of_value_and_writes_valid_parts(tmp_path):
    """The results' own XLSX writer: every part is well-formed XML; openpyxl and calamine (the
    readers the importer and its users use) read back each value as it was given; spaces at
    either end survive; what XML cannot hold becomes U+FFFD; a text is never a formula."""
    import xml.etree.ElementTree as ElementTree
    import zipfile
    from datetime import date, time

    import python_calamine

    from importer._xlsx import XlsxWriter

    values = [
        "=SUM(A1)", "  padded  ", "a < b & c > d", "line\r\nnext", "bell\x07", "\ud83d", "日本 😀",
        "", None, 0, -1, 2**40, 1.25, True, False,
        datetime(2026, 3, 4, 10, 30, 15), date(2026, 3, 4), time(10, 30), float("nan"),
    ]  # fmt: skip
    path = tmp_path / "book.xlsx"
    book = XlsxWriter(path)
    book.sheet("Results", frozen_header=True)
    book.header(["name", 7])
    book.rows([values, ["second"]])
    book.sheet("Summary & more")
    book.rows([["x", 1]])
    book.close()

    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            ElementTree.fromstring(archive.read(name))  # raises on malformed XML
    expected = [
        "=SUM(A1)", "  padded  ", "a < b & c > d", "line\nnext", "bell\ufffd", "\ufffd", "日本 😀",
        None, None, 0, -1, 2**40, 1.25, True, False,
        datetime(2026, 3, 4, 10, 30, 15), datetime(2026, 3, 4), time(10, 30), "nan",
    ]  # fmt: skip
    opened = openpyxl.load_workbook(path)
    assert opened.sheetnames == ["Results", "Summary & more"]
    sheet = opened["Results"]
    assert sheet.freeze_panes == "A2"
    assert [c.value for c in sheet[1]][:2] == ["name", 7] and sheet["A1"].font.b
    assert [c.value for c in sheet[2]] == expected
    assert all(c.data_type != "f" for r in sheet.iter_rows() for c in r)
    assert [c.value for c in sheet[3]][:1] == ["second"]
    calamine = python_calamine.CalamineWorkbook.from_path(str(path))
    rows = calamine.get_sheet_by_name("Results").to_python()
    assert rows[1][:7] == expected[:7] and rows[1][15] == expected[15]
    assert calamine.get_sheet_by_name("Summary & more").to_python() == [["x", 1.0]]
