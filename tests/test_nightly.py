"""Nightly keyed runs: rows gone from the export (--missing, --max-shrink) and edits made in iVvy
between nights (conflict, --overwrite-edits), night after night over the sandbox, on both
journal backends."""

from __future__ import annotations

import time

import httpx

from importer._api import results_rows
from importer.missing import EDIT_SLACK

from .test_cli_run import read_results
from .test_journal import as_json, invoke, keyed_rows, write_rows

KEY = ("--key", "Legacy Id")


def night(server, tmp_path, name: str, rows, *more: str):
    outcome = invoke(server, "run", write_rows(tmp_path / f"{name}.csv", rows), *KEY, "--json",
                     *more)  # fmt: skip
    assert outcome.exit_code in (0, 1), outcome.output
    return as_json(outcome), read_results(tmp_path / f"{name}.results.csv")


def writes(server, since: int) -> list[dict]:
    """The addOrUpdateTask calls the sandbox received since request ``since``."""
    return [
        r["body"]
        for r in server.get(f"/_sandbox/requests?since={since}")
        if r["action"] == "addOrUpdateTask"
    ]


def test_rows_gone_from_the_export_are_reported_then_cancelled_once_and_come_back(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(10)
    first, results = night(server, tmp_path, "night1", rows)
    assert first["counts"] == {"created": 10}
    ids = {r["Legacy Id"]: int(r["task_id"]) for r in results}

    # Night 2: L9 is gone from the export. By default it is reported, and its task left alone.
    seen = len(server.get("/_sandbox/requests"))
    second, results = night(server, tmp_path, "night2", rows[:9])
    assert second["exit_code"] == 0 and second["counts"] == {"unchanged": 9, "missing": 1}
    line = results[-1]
    assert (line["row"], line["Legacy Id"], line["result"]) == ("", "L9", "missing")
    assert int(line["task_id"]) == ids["L9"] and "--missing cancel" in line["message"]
    assert writes(server, seen) == [] and server.task(ids["L9"])["status"] == 0
    # The library reads that line back too, as no source row.
    (gone,) = [r for r in results_rows(tmp_path / "night2.results.csv") if not r.number]
    assert gone.cells["Legacy Id"] == "L9" and gone.outcome.result == "missing"

    # Night 3, told to cancel: L9's task is set to Cancelled, and nothing else is sent. (Later
    # than the edit slack after night 1: the cancel is this tool's own write, not an edit.)
    time.sleep(EDIT_SLACK + 0.5)
    seen = len(server.get("/_sandbox/requests"))
    third, results = night(server, tmp_path, "night3", rows[:9], "--missing", "cancel")
    assert third["exit_code"] == 0 and third["counts"] == {"unchanged": 9, "cancelled": 1}
    assert writes(server, seen) == [{"id": ids["L9"], "status": 3}]
    assert server.task(ids["L9"])["status"] == 3
    assert results[-1]["result"] == "cancelled" and results[-1]["Legacy Id"] == "L9"

    # Night 4: cancelled once, never again, and no longer listed.
    seen = len(server.get("/_sandbox/requests"))
    fourth, _ = night(server, tmp_path, "night4", rows[:9], "--missing", "cancel")
    assert fourth["counts"] == {"unchanged": 9} and writes(server, seen) == []

    # Night 5: L9 is back: its task (the same one) is updated with the row's status again.
    fifth, results = night(server, tmp_path, "night5", rows, "--missing", "cancel")
    assert fifth["counts"] == {"unchanged": 9, "updated": 1}
    assert int(results[-1]["task_id"]) == ids["L9"] and server.task(ids["L9"])["status"] == 0
    assert len(server.tasks()) == 10

    # The results sheet of night 2, run again: its missing line is no row to send.
    seen = len(server.get("/_sandbox/requests"))
    again = invoke(server, "run", tmp_path / "night2.results.csv", *KEY, "--json")
    assert again.exit_code == 0, again.output
    assert as_json(again)["counts"]["missing"] == 1 and writes(server, seen) == []


def test_a_broken_export_cancels_nothing_and_says_why(journal_at, make_sandbox, tmp_path):
    server = make_sandbox()
    rows = keyed_rows(10)
    night(server, tmp_path, "night1", rows)
    seen = len(server.get("/_sandbox/requests"))

    # Half the rows gone: more than --max-shrink's 20%. The rows there are still done.
    half, results = night(server, tmp_path, "half", rows[:5], "--missing", "cancel")
    assert half["exit_code"] == 1 and "50% fewer than run 1's 10" in half["missing_refused"]
    assert half["counts"] == {"unchanged": 5, "missing": 5}
    assert all("not cancelled" in r["message"] for r in results[5:])
    # An empty export (the header alone) is a broken one: nothing sent or cancelled (exit 1).
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(rows[0]) + "\n", encoding="utf-8")
    nothing = invoke(server, "run", empty, *KEY, "--missing", "cancel", "--json")
    assert nothing.exit_code == 1 and "no data rows below the header" in nothing.output
    assert "nothing was sent or cancelled" in nothing.output
    assert writes(server, seen) == [] and {t["status"] for t in server.tasks()} == {0}

    # The refused nights are not the baseline: the next night is still compared with night 1,
    # and a limit raised lets the half export cancel its five.
    told, _ = night(server, tmp_path, "told", rows[:5], "--missing", "cancel",
                    "--max-shrink", "60%")  # fmt: skip
    assert told["exit_code"] == 0 and told["counts"] == {"unchanged": 5, "cancelled": 5}
    assert sorted(t["status"] for t in server.tasks()) == [0] * 5 + [3] * 5

    # --max-changes counts the cancels: refused before anything is sent.
    night(server, tmp_path, "all", rows)  # all ten back (five updated)
    refused = invoke(server, "run", write_rows(tmp_path / "few.csv", rows[:8]), *KEY,
                     "--missing", "cancel", "--max-changes", "1")  # fmt: skip
    assert refused.exit_code == 2 and "2 cancelled" in refused.output


def test_an_edit_made_in_ivvy_between_nights_is_not_trampled(journal_at, make_sandbox, tmp_path):
    server = make_sandbox()
    rows = keyed_rows(5)
    _, results = night(server, tmp_path, "night1", rows)
    ids = {r["Legacy Id"]: int(r["task_id"]) for r in results}
    # iVvy's modifiedDate has whole seconds: a person's edit a few seconds after the import.
    time.sleep(3.2)
    person = {"priority": "low", "status": 2}
    httpx.post(f"{server.base_url}/_sandbox/tasks/{ids['L1']}", json=person).raise_for_status()

    # Night 2 changes L1 (edited in iVvy) and L2 (not): L1 ends conflict and is not sent.
    rows[1]["Status"] = "Done"
    rows[2]["Status"] = "Done"
    seen = len(server.get("/_sandbox/requests"))
    second, results = night(server, tmp_path, "night2", rows)
    assert second["exit_code"] == 1 and second["counts"] == {
        "unchanged": 3, "updated": 1, "conflict": 1
    }  # fmt: skip
    by_key = {r["Legacy Id"]: r for r in results}
    assert by_key["L1"]["result"] == "conflict" and by_key["L1"]["error_code"] == "EDITED_IN_IVVY"
    assert "status (iVvy: 2, this row: 4)" in by_key["L1"]["message"]
    assert [p["id"] for p in writes(server, seen)] == [ids["L2"]]
    assert server.task(ids["L1"])["status"] == 2 and server.task(ids["L1"])["priority"] == "low"

    # Night 3: the same conflict again (nothing learnt from a row not sent); L2, which this
    # tool wrote itself, changes again without one.
    time.sleep(1.1)
    rows[2]["Status"] = "In Progress"
    third, results = night(server, tmp_path, "night3", rows)
    assert third["counts"] == {"unchanged": 3, "updated": 1, "conflict": 1}

    # Night 4, told to overwrite: L1 is sent; the fields the row does not give stay.
    fourth, _ = night(server, tmp_path, "night4", rows, "--overwrite-edits")
    assert fourth["exit_code"] == 0 and fourth["counts"] == {"unchanged": 4, "updated": 1}
    assert server.task(ids["L1"])["status"] == 4 and server.task(ids["L1"])["priority"] == "low"

    # A task gone from the export and edited in iVvy is not cancelled either.
    time.sleep(3.2)
    httpx.post(f"{server.base_url}/_sandbox/tasks/{ids['L4']}", json=person).raise_for_status()
    fifth, results = night(server, tmp_path, "night5", rows[:4], "--missing", "cancel")
    assert fifth["counts"] == {"unchanged": 4, "conflict": 1}
    assert results[-1]["Legacy Id"] == "L4" and "not cancelled" in results[-1]["message"]
    assert server.task(ids["L4"])["status"] == 2


def test_a_blank_cell_does_not_clear_the_field_it_maps_to(make_sandbox, tmp_path):
    server = make_sandbox()
    rows = [{**row, "Description": f"notes {n}"} for n, row in enumerate(keyed_rows(2))]
    _, results = night(server, tmp_path, "night1", rows)
    task = int(results[0]["task_id"])
    rows[0]["Description"] = ""
    rows[0]["Status"] = "Done"
    seen = len(server.get("/_sandbox/requests"))
    second, _ = night(server, tmp_path, "night2", rows)
    assert second["counts"] == {"updated": 1, "unchanged": 1}
    (sent,) = writes(server, seen)
    assert sent["id"] == task and "description" not in sent and sent["status"] == 4
    assert "notes 0" in server.task(task)["description"]  # iVvy keeps what the row left blank


def _blank_night(server, tmp_path, *more: str):
    """Night 1 imports two rows with descriptions; night 2 blanks the first one's (and changes
    its status): what night 2 sent, its summary and results, and the first row's task."""
    rows = [{**row, "Description": f"notes {n}"} for n, row in enumerate(keyed_rows(2))]
    _, results = night(server, tmp_path, "night1", rows, *more)
    task = int(results[0]["task_id"])
    rows[0]["Description"] = "  "
    rows[0]["Status"] = "Done"
    seen = len(server.get("/_sandbox/requests"))
    second, results = night(server, tmp_path, "night2", rows, *more)
    return writes(server, seen), second, results, task, rows


def test_blanks_clear_clears_the_description_and_a_later_night_leaves_it_alone(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox(empty_text="clear")
    sent, second, results, task, rows = _blank_night(server, tmp_path, "--blanks", "clear")
    assert second["counts"] == {"updated": 1, "unchanged": 1} and second["exit_code"] == 0
    (update,) = sent
    assert update["id"] == task and update["description"] == "" and update["status"] == 4
    assert server.task(task)["description"] == "" and results[0]["error_code"] == ""
    # Night 3, the same export: nothing to send (a blank cell's digest is the same either way).
    seen = len(server.get("/_sandbox/requests"))
    third, _ = night(server, tmp_path, "night3", rows, "--blanks", "clear")
    assert third["counts"] == {"unchanged": 2} and writes(server, seen) == []


def test_blanks_clear_never_sends_an_empty_field_on_a_create(make_sandbox, tmp_path):
    server = make_sandbox(empty_text="refuse")
    rows = [{**row, "Description": ""} for row in keyed_rows(2)]
    first, _ = night(server, tmp_path, "night1", rows, "--blanks", "clear")
    assert first["counts"] == {"created": 2}
    assert all("description" not in body for body in writes(server, 0))


def test_blanks_clear_that_ivvy_ignores_is_reported_not_claimed(make_sandbox, tmp_path):
    """An iVvy that keeps a field sent empty (the sandbox's default: the reference is silent):
    the row is updated (its status), and says the description is still there."""
    server = make_sandbox()  # empty_text="keep"
    sent, second, results, task, _ = _blank_night(server, tmp_path, "--blanks", "clear")
    assert [body.get("description") for body in sent] == [""]
    assert "notes 0" in server.task(task)["description"] and server.task(task)["status"] == 4
    assert results[0]["result"] == "updated" and results[0]["error_code"] == "NOT_CLEARED"
    assert "iVvy kept description ('notes 0')" in results[0]["message"]
    assert second["not_cleared"] == 1 and second["exit_code"] == 1
    assert second["counts"] == {"updated": 1, "unchanged": 1}


def test_blanks_clear_that_ivvy_refuses_fails_the_row_with_its_reason(make_sandbox, tmp_path):
    server = make_sandbox(empty_text="refuse")
    _, second, results, task, _ = _blank_night(server, tmp_path, "--blanks", "clear")
    assert results[0]["result"] == "failed" and results[0]["error_code"] == "24395"
    assert "description: *Value must not be empty*" in results[0]["message"]
    assert "notes 0" in server.task(task)["description"] and server.task(task)["status"] == 0
    assert second["exit_code"] == 1


def test_undo_of_a_night_puts_back_the_tasks_it_cancelled_as_missing(
    journal_at, make_sandbox, tmp_path
):
    server = make_sandbox()
    rows = keyed_rows(4)
    rows[1]["Status"] = "In Progress"
    rows[2]["Status"] = "On Hold"
    _, results = night(server, tmp_path, "night1", rows)
    ids = {r["Legacy Id"]: int(r["task_id"]) for r in results}
    # Night 2: L1 and L2 are gone, and cancelled; then a person reopens L2's task in iVvy.
    second, _ = night(server, tmp_path, "night2", [rows[0], rows[3]], "--missing", "cancel",
                      "--max-shrink", "50%")  # fmt: skip
    assert second["counts"] == {"unchanged": 2, "cancelled": 2}
    edit = httpx.post(f"{server.base_url}/_sandbox/tasks/{ids['L2']}", json={"status": 4})
    edit.raise_for_status()

    planned = invoke(server, "undo", "--plan", "--json")
    assert as_json(planned)["plan"] == {"restore": 1, "leave": 1}
    seen = len(server.get("/_sandbox/requests"))
    undone = invoke(server, "undo", "--json")
    assert undone.exit_code == 1, undone.output  # L2's task was left: a person should look
    assert writes(server, seen) == [{"id": ids["L1"], "status": 1}]
    assert server.task(ids["L1"])["status"] == 1 and server.task(ids["L2"])["status"] == 4
    lines = {r["task_id"]: r for r in read_results(tmp_path / f"night2.undo-{second['run']}.csv")}
    assert lines[str(ids["L1"])]["result"] == "updated"
    assert "'L1': put back to status 1 (In Progress)" in lines[str(ids["L1"])]["message"]
    assert lines[str(ids["L2"])]["result"] == "skipped"
    assert "changed in iVvy since" in lines[str(ids["L2"])]["message"]

    # L1's key is live again: a night without it reports it gone again (and may cancel it).
    third, results = night(server, tmp_path, "night3", [rows[0], rows[3]])
    assert third["counts"] == {"unchanged": 2, "missing": 1}
    assert results[-1]["Legacy Id"] == "L1"
