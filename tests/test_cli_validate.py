"""``task-import validate`` and the validation a run does: verdicts, nothing sent, call counts."""

from __future__ import annotations

import json

from click.testing import CliRunner

from importer.cli import main

from .test_cli_run import env_for, read_results, write_csv


def invoke(sandbox, *args):
    return CliRunner().invoke(main, [*map(str, args), "--json"], env=env_for(sandbox))


def test_validate_writes_verdicts_and_sends_nothing(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "v.csv",
        "name,due,Contact ID,Assigned To,Lead ID\n"
        "A,2026-12-01,12,user3@example.com,\n"
        "B,2026-12-01,9999,,\n"
        "C,2026-12-01,,nobody@example.com,\n"
        "D,2026-12-01,,,40\n"
        "E,2026-12-01,contact7@example.com,,\n",
    )
    outcome = invoke(sandbox, "validate", source)
    assert outcome.exit_code == 1, outcome.output
    rows = read_results(tmp_path / "v.validation.csv")
    verdicts = [(r["result"], r["error_code"], r["field"]) for r in rows]
    assert verdicts == [
        ("valid", "", ""),
        ("invalid", "24390", "Contact ID"),
        ("invalid", "23016", "Assigned To"),
        ("invalid", "23017", "venueId"),
        ("valid", "", ""),
    ]
    assert "no user in iVvy has the e-mail nobody@example.com" in rows[2]["message"]
    assert sandbox.stats()["by_action"].get("crm.addOrUpdateTask", 0) == 0
    summary = json.loads(outcome.stdout)
    assert summary["counts"] == {"valid": 2, "invalid": 3}
    assert summary["error_codes"] == {"24390": 1, "23016": 1, "23017": 1}


def test_validate_offline_says_what_it_could_not_check(tmp_path):
    source = write_csv(tmp_path / "o.csv", "name,due,Contact ID\nA,2026-12-01,9999\n")
    outcome = CliRunner().invoke(main, ["validate", str(source), "--offline"])
    assert outcome.exit_code == 0, outcome.output
    assert "offline: ids, users and venues were not checked" in outcome.stderr


def test_a_run_resolves_emails_and_fills_the_default_venue(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "r.csv",
        "name,due,contactEmail,Owner Email,Opportunity ID\n"
        "A,2026-12-01,contact7@example.com,user3@example.com,\n"
        "B,2026-12-01,,,40\n",
    )
    outcome = invoke(sandbox, "run", source, "--venue-id", "2")
    assert outcome.exit_code == 0, outcome.output
    tasks = {t["name"]: t for t in sandbox.tasks()}
    assert (tasks["A"]["contactId"], tasks["A"]["assignedUserId"]) == (7, 3)
    assert (tasks["B"]["leadId"], tasks["B"]["venueId"]) == (40, 2)


def test_repeated_ids_cost_a_few_calls_never_one_per_row(sandbox, tmp_path):
    lines = "".join(f"T{n},2026-12-01,{(n % 5) + 1},{(n % 3) + 1}\n" for n in range(300))
    source = write_csv(tmp_path / "many.csv", "name,due,Contact ID,Company ID\n" + lines)
    outcome = invoke(sandbox, "validate", source)
    assert outcome.exit_code == 0, outcome.output
    calls = sandbox.stats()["by_action"]
    contacts = calls.get("contact.getContactList", 0) + calls.get("contact.getContact", 0)
    companies = calls.get("contact.getCompanyList", 0) + calls.get("contact.getCompany", 0)
    # 5 distinct contacts among 200 (2 pages), 3 companies among 50 (1 page): the ids are on
    # the first pages, so one call each.
    assert contacts == 1 and companies == 1


def test_duplicate_keys_are_refused_naming_the_first_row(sandbox, tmp_path):
    source = write_csv(
        tmp_path / "k.csv",
        "Legacy Id,name,due\nL1,A,2026-12-01\nL2,B,2026-12-01\nL1,C,2026-12-02\n",
    )
    outcome = invoke(sandbox, "validate", source, "--key", "Legacy Id")
    rows = read_results(tmp_path / "k.validation.csv")
    assert [r["result"] for r in rows] == ["valid", "valid", "invalid"]
    assert rows[2]["error_code"] == "DUPLICATE_KEY"
    assert "'L1' is already on row 2" in rows[2]["message"]
    assert outcome.exit_code == 1
    missing = invoke(sandbox, "validate", source, "--key", "Nope")
    assert missing.exit_code == 2 and "--key 'Nope': no such column" in missing.stderr


def test_identical_rows_are_a_warning(sandbox, tmp_path):
    source = write_csv(tmp_path / "i.csv", "name,due\nA,2026-12-01\nA,2026-12-01\n")
    outcome = invoke(sandbox, "validate", source)
    assert outcome.exit_code == 0
    rows = read_results(tmp_path / "i.validation.csv")
    assert rows[1]["warnings"] == "identical to row 2"


def test_all_or_nothing_sends_nothing_when_a_row_is_invalid(sandbox, tmp_path):
    source = write_csv(tmp_path / "a.csv", "name,due\nA,2026-12-01\nB,31/02/2026\n")
    outcome = invoke(sandbox, "run", source, "--all-or-nothing")
    assert outcome.exit_code == 1
    rows = read_results(tmp_path / "a.results.csv")
    assert [r["result"] for r in rows] == ["skipped", "invalid"]
    assert "--all-or-nothing" in rows[0]["message"]
    assert sandbox.tasks() == []


def test_all_or_nothing_sends_everything_when_every_row_is_valid_online(sandbox, tmp_path):
    good = write_csv(tmp_path / "g.csv", "name,due,contactId\nA,2026-12-01,12\nB,2026-12-02,13\n")
    outcome = invoke(sandbox, "run", good, "--all-or-nothing")
    assert outcome.exit_code == 0, outcome.output
    assert sorted(t["name"] for t in sandbox.tasks()) == ["A", "B"]
    # A contact that only iVvy can say does not exist stops the whole file, too.
    ghost = write_csv(
        tmp_path / "h.csv", "name,due,contactId\nC,2026-12-01,12\nD,2026-12-02,999999\n"
    )
    outcome = invoke(sandbox, "run", ghost, "--all-or-nothing")
    assert outcome.exit_code == 1, outcome.output
    rows = read_results(tmp_path / "h.results.csv")
    assert [(r["result"], r["error_code"]) for r in rows] == [("skipped", ""), ("invalid", "24390")]
    assert len(sandbox.tasks()) == 2


def test_header_row_names_the_row_of_column_names(tmp_path):
    """A first row of text as wide as the table reads as the header; --header-row 2 says the
    names are on row 2 (row numbers stay the sheet's). A row with nothing below is refused
    naming the row, exit 2."""
    source = write_csv(
        tmp_path / "titled.csv",
        "Exported by,Zoho,on Monday\nname,endDatetime,description\nCall,2026-12-01 10:00,ask\n",
    )
    found = CliRunner().invoke(main, ["validate", str(source), "--offline"])
    assert found.exit_code == 2 and "no column for name" in found.output, found.output
    given = CliRunner().invoke(main, ["validate", str(source), "--offline", "--header-row", "2"])
    assert given.exit_code == 0, given.output
    rows = read_results(tmp_path / "titled.validation.csv")
    assert [(r["row"], r["name"], r["result"]) for r in rows] == [("3", "Call", "valid")]
    beyond = CliRunner().invoke(main, ["validate", str(source), "--offline", "--header-row", "3"])
    assert beyond.exit_code == 2 and "row 3: no data rows below the header" in beyond.output
