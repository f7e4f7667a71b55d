"""Safe by default: no way through the tool overwrites, duplicates or loses a user's data.

One test per way it once did (issue 13), each over the sandbox on loopback and asserting on the
tasks the sandbox holds, not only on the results sheet.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections import Counter
from pathlib import Path

import openpyxl

from importer.client import IvvyClient
from importer.map import map_columns
from importer.options import RunOptions
from importer.pipeline import run_import
from importer.results import default_results_path

from .conftest import sent
from .test_cli_run import read_results
from .test_journal import as_json, invoke


def tasks_csv(path: Path, count: int, *, start: int = 0, prefix: str = "Task", extra=None):
    """A sheet of ``count`` tasks named ``{prefix} {n}``; ``extra`` adds columns per row."""
    rows = []
    for n in range(start, start + count):
        row = {"Task Name": f"{prefix} {n}", "Due Date": f"2026-12-{1 + n % 28:02d} 10:00"}
        row.update(extra(n) if extra else {})
        rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def names(server) -> Counter[str]:
    return Counter(t["name"] for t in server.tasks())


def test_a_legacy_id_column_never_overwrites_tasks_it_did_not_mean(sandbox, tmp_path):
    made = invoke(sandbox, "run", tasks_csv(tmp_path / "ours.csv", 5), "--json")
    assert made.exit_code == 0, made.output
    before = {t["id"]: t for t in sandbox.tasks()}
    # Another CRM's export: its own ids 1..3 happen to be the ids of tasks this tool made.
    theirs = tasks_csv(tmp_path / "other.csv", 3, prefix="Other", extra=lambda n: {"id": n + 1})
    requests = len(sent(sandbox))

    checked = invoke(sandbox, "validate", theirs, "--json")
    assert checked.exit_code == 2, checked.output
    summary = as_json(checked)
    assert summary["plan"] == {"update": 3}  # the plan says it, with or without --key
    assert "column 'id' gives 3 rows a task id" in summary["refusal"]
    assert "--update-existing" in summary["refusal"] and "--key 'id'" in summary["refusal"]

    refused = invoke(sandbox, "run", theirs)
    assert refused.exit_code == 2, refused.output
    assert "column 'id' gives 3 rows a task id" in refused.output
    assert "3 of them made by this tool from other rows" in refused.output
    assert {t["id"]: t for t in sandbox.tasks()} == before and len(sent(sandbox)) == requests
    assert not (tmp_path / "other.results.csv").exists()

    # Told it is their id: a key, never a task id; the rows are new tasks.
    keyed = invoke(sandbox, "run", theirs, "--key", "id", "--json")
    assert keyed.exit_code == 0, keyed.output
    assert as_json(keyed)["counts"] == {"created": 3}
    assert all(before[i] == t for i, t in ((t["id"], t) for t in sandbox.tasks()) if i in before)

    # A "Task ID" column (an alias of the id) given as --key: the same.
    aliased = tasks_csv(tmp_path / "aliased.csv", 2, prefix="Aliased",
                        extra=lambda n: {"Task ID": n + 1})  # fmt: skip
    outcome = invoke(sandbox, "run", aliased, "--key", "Task ID", "--json")
    assert outcome.exit_code == 0 and as_json(outcome)["counts"] == {"created": 2}
    assert names(sandbox) == Counter(
        [f"Task {n}" for n in range(5)] + [f"Other {n}" for n in range(3)]
        + ["Aliased 0", "Aliased 1"]
    )  # fmt: skip

    # On purpose: the updates are made, and undo puts the tasks back as they were.
    meant = tasks_csv(tmp_path / "meant.csv", 2, prefix="Meant", extra=lambda n: {"id": n + 1})
    updated = invoke(sandbox, "run", meant, "--update-existing", "--json")
    assert updated.exit_code == 0 and as_json(updated)["counts"] == {"updated": 2}
    assert {sandbox_task["name"] for sandbox_task in sandbox.tasks()} >= {"Meant 0", "Meant 1"}
    undone = invoke(sandbox, "undo", "--json")
    assert undone.exit_code == 0, undone.output
    assert {i: t["name"] for i, t in before.items()} == {
        t["id"]: t["name"] for t in sandbox.tasks() if t["id"] in before
    }


def test_profiles_of_other_crms_never_map_their_ids_to_the_task_id():
    headers = ["Task ID", "id", "Subject", "Due Date"]
    for profile in ("salesforce", "hubspot", "pipedrive", "zoho", "dynamics"):
        mapping = map_columns(headers, path="x.csv", profile=profile, require=False)
        assert "id" not in mapping.columns, profile
    assert map_columns(headers, path="x.csv").columns["id"] == "id"  # plain: a candidate


def test_a_stopped_run_then_its_results_with_only_then_resume_make_no_duplicate(
    make_sandbox, tmp_path
):
    server = make_sandbox(latency_ms=15)
    source = tasks_csv(tmp_path / "x.csv", 150)

    async def stopped_run() -> None:
        stop = asyncio.Event()

        def on_event(event) -> None:
            if event.kind == "row" and event.done == 40:
                stop.set()  # what the first Ctrl-C does

        async with IvvyClient(server.credentials) as client:
            await run_import(source, client, RunOptions(concurrency=16, settle=0.5), stop=stop,
                             on_event=on_event)  # fmt: skip

    asyncio.run(stopped_run())
    first = read_results(tmp_path / "x.results.csv")
    assert {r["result"] for r in first} >= {"created", "skipped"}
    assert 40 <= len(server.tasks()) < 150

    only = invoke(server, "run", tmp_path / "x.results.csv", "--only", "skipped,failed",
                  "--settle-s", "0.5", "--json")  # fmt: skip
    assert only.exit_code == 0, only.output
    assert as_json(only)["results"].endswith("x.results.2.csv")  # not over its own source
    resumed = invoke(server, "run", source, "--resume", "--settle-s", "0.5", "--json")
    assert resumed.exit_code == 0, resumed.output
    counts = as_json(resumed)["counts"]
    assert set(counts) <= {"created", "unchanged"}, counts
    assert names(server) == Counter(f"Task {n}" for n in range(150))  # every row once
    # The source run through once more, and the results sheet without --only: nothing new.
    again = invoke(server, "run", source, "--new-run", "--json")
    assert as_json(again)["counts"] == {"unchanged": 150}
    whole = invoke(server, "run", tmp_path / "x.results.2.csv", "--json")
    assert as_json(whole)["counts"] == {"unchanged": 150}
    assert len(server.tasks()) == 150


def test_a_results_sheet_run_again_without_only_updates_and_creates_nothing(sandbox, tmp_path):
    source = tasks_csv(tmp_path / "r.csv", 4, extra=lambda n: {"Legacy": f"L{n}"})
    assert invoke(sandbox, "run", source, "--key", "Legacy").exit_code == 0
    results = tmp_path / "r.results.csv"
    rows = read_results(results)
    rows[2]["Task Name"] = "Task 2, edited"
    with results.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    planned = invoke(sandbox, "validate", results, "--json")
    assert as_json(planned)["plan"] == {"unchanged": 3, "update": 1}
    said = invoke(sandbox, "validate", results)  # the plan, printed, without --key
    assert "(plan: 3 unchanged, 1 update)" in said.output, said.output
    again = invoke(sandbox, "run", results, "--json")
    assert again.exit_code == 0, again.output
    assert as_json(again)["counts"] == {"unchanged": 3, "updated": 1}
    assert names(sandbox) == Counter(["Task 0", "Task 1", "Task 2, edited", "Task 3"])
    # Its task_id column is honoured, even when the source had an "id" column of its own.
    legacy = tasks_csv(tmp_path / "l.csv", 2, prefix="Legacy", extra=lambda n: {"id": 900 + n})
    assert invoke(sandbox, "run", legacy, "--key", "id").exit_code == 0
    round_two = invoke(sandbox, "run", tmp_path / "l.results.csv", "--json")
    assert round_two.exit_code == 0, round_two.output
    assert as_json(round_two)["counts"] == {"unchanged": 2}
    assert len(sandbox.tasks()) == 6


def test_results_never_overwrite_a_source_and_never_make_folders(sandbox, tmp_path):
    source = tasks_csv(tmp_path / "x.csv", 2)
    text = source.read_bytes()
    clobber = invoke(sandbox, "run", source, "--results", source)
    assert clobber.exit_code == 2 and "is the source itself" in clobber.output
    assert source.read_bytes() == text and sandbox.tasks() == []

    missing = tmp_path / "no" / "such" / "folder" / "out.csv"
    nowhere = invoke(sandbox, "run", source, "--results", missing)
    assert nowhere.exit_code == 2 and "does not exist" in nowhere.output
    assert not (tmp_path / "no").exists() and sandbox.tasks() == []
    assert sent(sandbox) == []

    # Two sources of one name: each its own results, never the other's.
    tasks_csv(tmp_path / "x.txt", 2, prefix="Text")
    assert invoke(sandbox, "run", source).exit_code == 0
    assert invoke(sandbox, "run", tmp_path / "x.txt").exit_code == 0
    assert (tmp_path / "x.csv.results.csv").exists() and (tmp_path / "x.txt.results.csv").exists()
    assert not (tmp_path / "x.results.csv").exists()
    book = openpyxl.Workbook()
    book.active.append(["Task Name", "Due Date"])
    book.active.append(["Booked", "2026-12-01 10:00"])
    book.save(tmp_path / "y.xlsx")
    # Another source of the same name beside it (its bytes only matter: they must not change).
    (tmp_path / "y.ods").write_bytes(b"PK\x03\x04 another workbook, not to be touched")
    ods = (tmp_path / "y.ods").read_bytes()
    assert invoke(sandbox, "run", tmp_path / "y.xlsx").exit_code == 0
    assert (tmp_path / "y.xlsx.results.xlsx").exists() and (tmp_path / "y.ods").read_bytes() == ods
    for name, expected in (("X.xls", "X.xls.results.xlsx"), ("X.ods", "X.ods.results.xlsx")):
        (tmp_path / "X.xlsx").touch()
        assert default_results_path(tmp_path / name).name == expected
    assert default_results_path(tmp_path / "alone.xls").name == "alone.results.xlsx"


# -- the page -----------------------------------------------------------------------------------


def _finish_import(client, base: str, **form: str) -> dict:
    import time

    from .test_serve_http import csrf_of

    page = client.post(f"{base}/import", data={"csrf": csrf_of(client, base + "/check"), **form})
    assert page.status_code == 200, page.text
    for _ in range(1200):  # up to a minute, for a loaded machine
        state = client.get(f"{base}/progress").json()
        if state.get("finished"):
            return state
        time.sleep(0.05)
    raise AssertionError(state)


def test_on_the_page_a_correction_belongs_to_its_sheet_alone(served, sandbox, tmp_path):
    import httpx

    from .test_serve_http import checked, csrf_of, upload

    book = openpyxl.Workbook()
    for title, prefix in (("A", "Alpha"), ("B", "Beta")):
        sheet = book.create_sheet(title)
        sheet.append(["Task Name", "Due Date"])
        sheet.append([f"{prefix} 1", "2026-12-01 10:00"])
        sheet.append([f"{prefix} 2", "31/02/2026" if title == "A" else "2026-12-09 10:00"])
    del book["Sheet"]
    path = tmp_path / "two.xlsx"
    book.save(path)
    address = served()
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        asked = upload(client, address, path.read_bytes(), "two.xlsx", token)
        base = str(asked.url).rsplit("/", 1)[0]
        client.post(f"{base}/sheet", data={"csrf": token, "sheet": "A"})
        assert "1 invalid" in checked(client, base).text
        client.post(f"{base}/fix", data={"csrf": token, "row": "3", "column": "Due Date",
                                          "value": "2026-12-05 10:00"})  # fmt: skip
        on_a = checked(client, base).text
        assert 'id="corrections"' in on_a and "2026-12-05 10:00" in on_a
        client.post(f"{base}/sheet", data={"csrf": token, "sheet": "B"})
        on_b = checked(client, base).text
        assert 'id="corrections"' not in on_b and "2026-12-05 10:00" not in on_b
        state = _finish_import(client, base)
        assert state["counts"] == {"created": 2}
        beta = {t["name"]: t["endDatetime"] for t in sandbox.tasks()}
        assert beta == {"Beta 1": "2026-12-01 10:00:00 UTC", "Beta 2": "2026-12-09 10:00:00 UTC"}

        # Sheet A keeps its own correction; taken back, the cell reads as the file has it.
        second = upload(client, address, path.read_bytes(), "two.xlsx", token)
        other = str(second.url).rsplit("/", 1)[0]
        client.post(f"{other}/sheet", data={"csrf": token, "sheet": "A"})
        client.post(f"{other}/fix", data={"csrf": token, "row": "3", "column": "Due Date",
                                           "value": "2026-12-05 10:00"})  # fmt: skip
        client.post(f"{other}/sheet", data={"csrf": token, "sheet": "B"})
        client.post(f"{other}/sheet", data={"csrf": token, "sheet": "A"})
        assert "1 invalid" not in checked(client, other).text
        client.post(f"{other}/unfix", data={"csrf": token, "row": "3", "column": "Due Date"})
        assert "1 invalid" in checked(client, other).text


def test_on_the_page_a_file_imported_before_is_said_so_and_not_created_again(
    served, sandbox, tmp_path
):
    import httpx

    from .test_serve_http import checked, csrf_of, upload

    text = "name,endDatetime\nOne,2026-12-01 10:00\nTwo,31/02/2026\nThree,2026-12-03 10:00\n"
    address = served()
    with httpx.Client(follow_redirects=True) as client:
        mapped = upload(client, address, text)
        base = str(mapped.url).rsplit("/", 1)[0]
        token = csrf_of(client, address)
        assert 'id="previous"' not in checked(client, base).text
        client.post(f"{base}/fix", data={"csrf": token, "row": "3", "column": "endDatetime",
                                          "value": "2026-12-02 10:00"})  # fmt: skip
        assert _finish_import(client, base)["counts"] == {"created": 3}

        # The original file, uploaded again: said before anything is sent, and sent as the
        # same rows (the corrected one is invalid again in the file as it is).
        again = upload(client, address, text)
        other = str(again.url).rsplit("/", 1)[0]
        check = checked(client, other).text
        assert "this file was imported into" in check and "3 created" in check
        assert "Import again the 2 valid rows" in check
        assert "2 unchanged" in check.replace("</span> ", " ")
        state = _finish_import(client, other, again="1")
        assert state["counts"] == {"unchanged": 2, "invalid": 1}, state
    assert names(sandbox) == Counter(["One", "Two", "Three"])


def test_on_the_page_task_ids_of_unknown_origin_are_asked_about(served, sandbox, tmp_path):
    import httpx

    from .test_serve_http import checked, upload

    address = served()
    with httpx.Client(follow_redirects=True) as client:
        first = upload(client, address, "name,endDatetime\nOurs,2026-12-01 10:00\n")
        made = _finish_import(client, str(first.url).rsplit("/", 1)[0])
        assert made["counts"] == {"created": 1}
        task = sandbox.tasks()[0]["id"]
        theirs = upload(client, address, f"id,name,endDatetime\n{task},Theirs,2026-12-01 10:00\n")
        base = str(theirs.url).rsplit("/", 1)[0]
        mapping = client.get(f"{base}/map").text
        id_row = re.search(r"<td>id</td>.*?</tr>", mapping, re.S).group(0)
        assert "task ids of unknown origin" in id_row and "certain" not in id_row
        check = checked(client, base).text
        assert 'id="refusal"' in check and 'name="update_existing"' in check
        assert "--" not in check.split('id="refusal"')[1].split("</div>")[0]  # no CLI options
        refused = _finish_import(client, base)
        assert "gives 1 rows a task id" in refused["error"]
        assert names(sandbox) == Counter(["Ours"])
        meant = _finish_import(client, base, update_existing="1")
        assert meant.get("counts") == {"updated": 1}, meant
    assert names(sandbox) == Counter(["Theirs"])
