"""The import page, end to end in a real headless Chromium (Debian's), against the sandbox:
upload a sheet with faults, change a mapping, fix a cell, import, download the results.

With UPDATE_SCREENSHOTS=1 the screenshots of each step go to docs/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from .test_cli_run import env_for

#: Debian's Chromium (IVVY_TEST_CHROMIUM names another, or a missing one to see the rule below).
CHROMIUM = os.environ.get("IVVY_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent.parent / "docs"

if not Path(CHROMIUM).exists():
    # Locally the browser test may be skipped, with its reason; in CI a missing Chromium is
    # a failure: .ci/run installs it, and a test that needs it never skips silently there.
    if os.environ.get("CI") == "true":
        pytestmark = pytest.mark.usefixtures("_chromium_missing")
    else:
        pytestmark = pytest.mark.skip(reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture
def _chromium_missing() -> None:
    pytest.fail(f"CI=true and no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")


ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SHEET = (
    "Task,When,Contact ID,Priority,Notes,Legacy ref\n"
    "Call the caterer,2026-12-01 10:00,12,high,Menu for 80,A-1\n"
    "Send the quote,2026-12-02 14:00,13,urgent,<script>alert(1)</script>,A-2\n"
    'Ring the florist,2026-12-03 09:00,9999,low,=HYPERLINK("http://x"),A-3\n'
    "Book the band,2026-12-04 16:00,14,medium,,A-4\n"
)


def start_page(server, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``task-import serve`` in a process of its own, sending to ``server``; its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "importer.cli", "serve", "--port", "0", *args],
        env={**os.environ, **env_for(server)},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    if "http://" not in line:
        process.kill()
        raise AssertionError(line + process.stderr.read())
    return process, line.split("The import page: ", 1)[1].strip()


@pytest.fixture
def page_server(sandbox, tmp_path) -> Iterator[str]:
    process, address = start_page(sandbox, tmp_path)
    yield address
    process.terminate()
    process.wait(timeout=20)


def test_the_whole_flow_in_a_browser(sandbox, page_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    source = tmp_path / "december.csv"
    source.write_text(SHEET, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page.set_default_timeout(20_000)

        # 1. Upload
        page.goto(page_server)
        expect(page.locator("#drop")).to_contain_text("Drop a spreadsheet here")
        page.screenshot(path=shots / "serve-1-upload.png")
        page.set_input_files("#file", str(source))
        page.click("form#upload button[type=submit]")

        # 2. Map: "When" is no name the importer knows; the due date column is chosen by hand.
        expect(page.locator("h2")).to_have_text("Which column is which?")
        expect(page.locator(".error")).to_contain_text("no column for endDatetime")
        when = page.locator('select[name="column:When"]')
        expect(when).to_have_value("")
        expect(page.locator('select[name="column:Task"]')).to_have_value("name")
        # Two columns for one field: said on the spot, and the form cannot be sent.
        when.select_option("name")
        expect(page.locator("#twice")).to_contain_text("Task and When both feed Task name")
        expect(page.locator("button[name=next][value=check]")).to_be_disabled()
        when.select_option("endDatetime")
        expect(page.locator("#twice")).to_have_text("")
        expect(page.locator("button[name=next][value=check]")).to_be_enabled()
        page.screenshot(path=shots / "serve-2-map.png", full_page=True)
        page.click("button[name=next][value=check]")

        # 3. Check: two rows are refused, their faulty cells marked; one is fixed on the page.
        expect(page.locator("h2")).to_have_text("Check and fix")
        expect(page.locator(".counts")).to_contain_text("2 invalid")
        expect(page.locator("#row-3 td.fault")).to_have_text("urgent")
        expect(page.locator("#row-4 td.fault")).to_have_text("9999")
        # Cells are text: the script is shown, not run; the formula is shown as written.
        expect(page.locator("#row-3")).to_contain_text("<script>alert(1)</script>")
        expect(page.locator("#row-4")).to_contain_text('=HYPERLINK("http://x")')
        page.click("#errors-only")
        expect(page.locator("table.rows tbody tr")).to_have_count(2)
        page.screenshot(path=shots / "serve-3-check.png", full_page=True)
        page.select_option('#row-3 select[name="value"]', "high")  # a priority's values
        page.click("#row-3 form.fix button")
        expect(page.locator(".counts")).to_contain_text("1 invalid")
        expect(page.locator("#row-3")).to_have_count(0)  # errors only: the fixed row is gone
        # Keyboard flow: back at the fixed row, the next error's box has the focus; p and n
        # move between the errors from outside a box.
        expect(page.locator('#row-4 [name="value"]')).to_be_focused()
        page.locator("h2").click()
        page.keyboard.press("n")
        expect(page.locator('#row-4 [name="value"]')).to_be_focused()

        # 4. Import, with its progress, and 5. the results.
        page.click("#import")
        expect(page.locator("h2")).to_have_text("Done", timeout=60_000)
        expect(page.locator(".counts")).to_contain_text("3 created")
        page.screenshot(path=shots / "serve-4-results.png", full_page=True)
        with page.expect_download() as download:
            page.click("#results")
        results = tmp_path / "results.xlsx"
        download.value.save_as(results)
        with page.expect_download() as download:
            page.click("#to-fix")
        to_fix = tmp_path / "to-fix.xlsx"
        download.value.save_as(to_fix)
        browser.close()

    sheet = openpyxl.load_workbook(results)["Results"]
    assert all(c.data_type != "f" for r in sheet.iter_rows() for c in r)  # no formula cell
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    by_row = {r[header.index("row")]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert set(by_row) == {2, 3, 4, 5}
    assert by_row[3]["Priority"] == "high" and by_row[3]["result"] == "created"  # the fix
    assert by_row[3]["Notes"] == "<script>alert(1)</script>"
    assert by_row[4]["result"] == "invalid" and by_row[4]["error_code"] == 24390
    assert by_row[4]["Notes"] == '=HYPERLINK("http://x")'  # a text cell: never evaluated
    tasks = {t["name"]: t for t in sandbox.tasks()}
    assert set(tasks) == {"Call the caterer", "Send the quote", "Book the band"}
    assert tasks["Send the quote"]["priority"] == "high"
    assert all(by_row[r]["task_id"] == tasks[by_row[r]["Task"]]["id"] for r in (2, 3, 5))
    fix_sheet = openpyxl.load_workbook(to_fix)["Results"]
    fix_rows = list(fix_sheet.iter_rows(values_only=True))
    assert [r[0] for r in fix_rows[1:]] == ["Ring the florist"]
    assert '=HYPERLINK("http://x")' in fix_rows[1]  # the row to fix holds the text, as text
    assert all(c.data_type != "f" for r in fix_sheet.iter_rows() for c in r)  # never a formula
    assert source.read_text(encoding="utf-8") == SHEET  # the uploaded file is never changed


def test_a_dropped_file_imports_and_the_progress_survives_a_closed_tab(sandbox, tmp_path):
    """A file dropped on the page is uploaded; the import goes on without the page, and opening
    it again shows where it is."""
    from playwright.sync_api import expect, sync_playwright

    rows = "".join(f"Task {n},2026-12-01 10:00\n" for n in range(300))
    source = tmp_path / "many.csv"
    source.write_text("name,endDatetime\n" + rows, encoding="utf-8")
    process, address = start_page(sandbox, tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(address)
            # Dropped onto the page, as from a file manager.
            dropped = page.evaluate_handle(
                """(text) => {
                    const transfer = new DataTransfer();
                    transfer.items.add(new File([text], "many.csv", {type: "text/csv"}));
                    return transfer;
                }""",
                source.read_text(encoding="utf-8"),
            )
            page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
            expect(page.locator("h2")).to_have_text("Which column is which?")
            expect(page.locator("header .file")).to_contain_text("many.csv")
            page.click("button[name=next][value=check]")
            page.click("#import")
            import_url = page.url
            page.close()  # the tab closes while the rows go
            time.sleep(0.5)
            again = browser.new_page()
            again.goto(import_url)
            expect(again.locator("h2")).to_have_text("Done", timeout=60_000)
            expect(again.locator(".counts")).to_contain_text("300 created")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert len(sandbox.tasks()) == 300
