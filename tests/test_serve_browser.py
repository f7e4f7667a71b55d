"""The import page, end to end in a real headless Chromium (Debian's), against the sandbox, on
a phone's width (375 px) and a desktop's (1280 px): upload a sheet with faults, change a
mapping, fix cells, import, correct the rows not imported and send them again, download the
results, and no dead end after them; and a 20,000-row sheet through the Map step's header row,
guesses, value mapping and settings, the check page's pages, filters, replace-all, take-back
and editing, an import stopped partway, and a second import waiting its turn meanwhile.

On every step the page must not scroll sideways, and axe-core (from the npm registry: .ci/run
installs it) must find no serious or critical accessibility violation. With UPDATE_SCREENSHOTS=1
the screenshots of each step go to docs/ (the README shows them).
"""

from __future__ import annotations

import os
import re
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
#: axe-core's script, as npm installs it (.ci/run: ``npm install axe-core`` in this folder).
AXE = Path(
    os.environ.get("IVVY_TEST_AXE")
    or Path.home() / ".cache/ivvy-task-importer-axe/node_modules/axe-core/axe.min.js"
)
WIDTHS = [375, 1280]

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


def axe_source() -> str:
    """axe-core's script; its absence fails in CI (.ci/run installs it), and skips elsewhere."""
    if not AXE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no axe-core at {AXE}: .ci/run installs it with npm")
        pytest.skip(f"needs axe-core at {AXE} (npm install axe-core; .ci/run does)")
    return AXE.read_text(encoding="utf-8")


#: axe-core run in the page: its violations, each with the elements it found.
AXE_RUN = """async () => {
    const found = await axe.run(document, {resultTypes: ["violations"]});
    return found.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" "))}));
}"""


#: The elements that reach past the width (to say what widens a page that scrolls sideways).
WIDEST = """(width) => Array.from(document.querySelectorAll("body *"))
    .filter((e) => e.getBoundingClientRect().right > width && !e.closest(".scroll *"))
    .slice(0, 6).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)"""


class Looker:
    """What every step of the page is held to, at one width: it never scrolls sideways, and
    axe-core finds nothing serious or critical in it; then its screenshot."""

    def __init__(self, page, width: int, shots: Path, axe: str) -> None:
        self.page, self.width, self.shots, self.axe = page, width, shots, axe

    def __call__(self, name: str) -> None:
        page = self.page
        # The page whole, its stylesheet and fonts applied. (In a loaded suite a step was twice
        # found 664 px wide at 375 with nothing past the width outside the table's scroll box,
        # as an unstyled page is: measured, it seems, before its style applied.)
        page.wait_for_load_state("load")
        page.evaluate("document.fonts.ready.then(() => true)")
        wide = page.evaluate("document.documentElement.scrollWidth")
        over = page.evaluate(WIDEST, self.width) if wide > self.width else []
        assert wide <= self.width, f"{name}: the page is {wide} px wide at {self.width} px: {over}"
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.evaluate(self.axe)  # run in the page (the CSP binds its own scripts only)
        violations = page.evaluate(AXE_RUN)
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, f"{name} at {self.width} px: {serious}"
        page.screenshot(path=self.shots / f"{name}-{self.width}.png", full_page=True)


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


@pytest.mark.parametrize("width", WIDTHS)
def test_the_whole_flow_in_a_browser(sandbox, page_server, tmp_path, width):
    from playwright.sync_api import expect, sync_playwright

    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    axe = axe_source()
    source = tmp_path / "december.csv"
    source.write_text(SHEET, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": 800}, accept_downloads=True)
        page.set_default_timeout(20_000)
        look = Looker(page, width, shots, axe)

        # 1. Upload. An empty file is refused on the Map step, with a way on.
        empty = tmp_path / "empty.csv"
        empty.write_text("", encoding="utf-8")
        page.goto(page_server)
        page.set_input_files("#file", str(empty))
        page.click("form#upload button[type=submit]")
        expect(page.locator(".error")).to_contain_text("empty")
        page.click("text=Upload another file")
        expect(page.locator("#drop")).to_contain_text("Drop a spreadsheet here")
        look("serve-1-upload")
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
        look("serve-2-map")
        page.click("button[name=next][value=check]")

        # 3. Check: two rows are refused, their faulty cells marked; one is fixed on the page.
        expect(page.locator("h2")).to_have_text("Check and fix")
        expect(page.locator(".counts")).to_contain_text("2 invalid")
        expect(page.locator("#row-3 td.fault")).to_have_text("urgent")
        expect(page.locator("#row-4 td.fault")).to_have_text("9999")
        # Cells are text: the script is shown, not run; the formula is shown as written.
        expect(page.locator("#row-3")).to_contain_text("<script>alert(1)</script>")
        expect(page.locator("#row-4")).to_contain_text('=HYPERLINK("http://x")')
        # The task's name is the first column after the row's number, and stays in sight.
        expect(page.locator("table.rows thead th").nth(1)).to_have_text("Task")
        expect(page.locator("#row-4 td.pin")).to_have_text("Ring the florist")
        page.click("#errors-only")
        expect(page.locator("table.rows tbody tr")).to_have_count(2)
        look("serve-3-check")
        pinned_at = page.locator("#row-4 td.pin").bounding_box()
        page.locator("div.scroll").evaluate("box => { box.scrollLeft = box.scrollWidth; }")
        if width == 375:  # the table scrolled inside its box; the name did not move
            assert page.locator("div.scroll").evaluate("box => box.scrollLeft") > 0
            assert abs(page.locator("#row-4 td.pin").bounding_box()["x"] - pinned_at["x"]) < 2
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

        # 4. Import, with its progress, and 5. the results: the shape of the run as a chart,
        # the row not imported with its reason.
        page.click("#import")
        expect(page.locator("h2")).to_have_text("Done", timeout=60_000)
        expect(page.locator(".counts")).to_contain_text("3 created")
        expect(page.locator("#chart-results desc")).to_have_text("created: 3; invalid: 1")
        expect(page.locator("#chart-results rect")).to_have_count(2)
        expect(page.locator("#chart-codes desc")).to_have_text("24390: 1")
        expect(page.locator("#not-imported #row-4")).to_contain_text("24390")
        look("serve-4-results")
        with page.expect_download() as download:
            page.click("#results")
        results = tmp_path / "results.xlsx"
        download.value.save_as(results)
        with page.expect_download() as download:
            page.click("#to-fix")
        to_fix = tmp_path / "to-fix.xlsx"
        download.value.save_as(to_fix)

        # 6. The row not imported, corrected on the done page and sent again.
        row = page.locator("#not-imported #row-4")
        expect(row.locator('select[name="column"]')).to_have_value("Contact ID")
        row.locator('input[name="value"]').fill("14")
        row.locator("button").click()
        expect(page.locator("#not-imported #row-4")).to_contain_text("→ 14")
        page.click("#send-again")
        expect(page.locator("h2")).to_have_text("Done", timeout=60_000)
        expect(page.locator(".counts")).to_contain_text("1 created")
        expect(page.locator("#not-imported")).to_have_count(0)
        look("serve-5-sent-again")
        # No dead end after the results: Back, and every step again, answer a page.
        done_url = page.url
        for _ in range(3):
            page.go_back()
            expect(page.locator("h2")).to_be_visible()
            expect(page.locator("body")).not_to_contain_text("Internal Server Error")
        for step, title in (("map", "Which column is which?"), ("check", "Check and fix"),
                            ("import", "Done")):  # fmt: skip
            page.goto(done_url.rsplit("/", 1)[0] + f"/{step}")
            expect(page.locator("h2")).to_have_text(title)
        # The rows to fix, uploaded again, are mapped as the sheet was (and the page says so),
        # each field by its name on the page with the API's beside it, the required marked.
        page.goto(page_server)
        page.set_input_files("#file", str(to_fix))
        page.click("form#upload button[type=submit]")
        expect(page.locator("#reused")).to_be_visible()
        expect(page.locator('select[name="column:When"]')).to_have_value("endDatetime")
        chosen = page.locator('select[name="column:Task"] option:checked')
        expect(chosen).to_have_text("Task name (name) · required")
        expect(page.locator("#mapping-form")).to_contain_text("1 rows to import")
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
    assert sorted(t["name"] for t in sandbox.tasks()) == sorted(tasks)  # each once
    assert set(tasks) == {"Call the caterer", "Send the quote", "Book the band",
                          "Ring the florist"}  # fmt: skip
    assert tasks["Send the quote"]["priority"] == "high"
    assert str(tasks["Ring the florist"]["contactId"]) == "14"  # corrected on the done page
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


def big_sheet(rows: int = 20_000) -> str:
    """A legacy export of ``rows`` tasks: a title row above the column names, two headers
    misspelt, words to map (urgent, Done), and faults: an unknown contact on one row in a
    thousand, an impossible date on one in two thousand."""
    lines = [
        "Tasks exported from the old CRM,,,,,",
        "Task,Due Dte,Contact ID,Priority,Stauts,Notes",
    ]
    for n in range(rows):
        number = n + 3  # the row's number in the sheet
        due = "31/02/2026 10:00" if number % 2000 == 11 else f"2026-12-{1 + n % 28:02d} 10:00"
        contact = "9999" if number % 1000 == 7 else str(12 + n % 3)
        priority = "urgent" if number % 500 == 0 else ("high", "low", "medium")[n % 3]
        status = "Done" if n % 4 == 0 else "Open"
        lines.append(f"Task {number},{due},{contact},{priority},{status},note {number}")
    return "\n".join(lines) + "\n"


# At the narrowest width alone: the layout at 1280 px is the small sheet's test's, and each
# width of this one takes most of a minute (the suite has five).
@pytest.mark.parametrize("width", WIDTHS[:1])
def test_a_20000_row_sheet_is_mapped_fixed_at_scale_and_stopped(sandbox, tmp_path, width):
    """The Map step's header row, guesses and value mapping, and the check page's pages,
    filters, replace-all, take-back and editing, on 20,000 rows; then an import stopped
    partway says how far it went, and the sandbox holds exactly the rows it says it sent."""
    from playwright.sync_api import expect, sync_playwright

    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    axe = axe_source()
    source = tmp_path / "legacy-tasks.csv"
    source.write_text(big_sheet(), encoding="utf-8")
    process, address = start_page(sandbox, tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_default_timeout(60_000)
            look = Looker(page, width, shots, axe)
            page.goto(address)
            page.set_input_files("#file", str(source))
            page.click("form#upload button[type=submit]")

            # The header row: found below the title, shown, and changeable.
            expect(page.locator("h2")).to_have_text("Which column is which?")
            expect(page.locator("#header-row")).to_have_value("2")
            page.fill("#header-row", "1")
            page.click("#header-form button")
            # The title row holds one name for six columns: said, with the form still there.
            expect(page.locator(".error")).to_contain_text("more cells than headers")
            expect(page.locator("#header-row")).to_have_value("1")
            page.fill("#header-row", "2")
            page.click("#header-form button")
            # A typo close enough is chosen (a guess to check); one less sure is offered.
            expect(page.locator('select[name="column:Due Dte"]')).to_have_value("endDatetime")
            expect(page.locator('select[name="column:Stauts"]')).to_have_value("")
            page.click('button.guess[data-column="Stauts"]')
            expect(page.locator('select[name="column:Stauts"]')).to_have_value("status")
            page.click("button[name=next][value=map]")
            # Value mapping: every urgent is high, every Done is Completed.
            page.select_option('select[name="value:priority:urgent"]', "high")
            page.select_option('select[name="value:status:Done"]', "4")
            # The sheet's times were written in Sydney (the page says UTC unless told).
            expect(page.locator("fieldset.settings")).to_contain_text("read as UTC")
            page.fill('input[name="setting:timezone"]', "Australia/Sydney")
            expect(page.locator("#mapping-form")).to_contain_text("20000 rows to import")
            look("serve-6-map-20000")
            page.click("button[name=next][value=check]")

            # 30 rows refused among 20,000: 20 unknown contacts, 10 impossible dates.
            expect(page.locator("h2")).to_have_text("Check and fix")
            expect(page.locator(".counts")).to_contain_text("30 invalid")
            expect(page.locator(".counts")).to_contain_text("19970 valid")
            expect(page.locator("#pages")).to_contain_text("page 1 of 40")
            page.click("#next-page")
            expect(page.locator("#pages")).to_contain_text("Rows 501–1000 of 20000")
            expect(page.locator("#row-503")).to_have_count(1)  # the sheet's rows 3 onwards
            expect(page.locator("#row-1002")).to_have_count(1)
            expect(page.locator("#row-1003")).to_have_count(0)
            # Filtered by code, then by column.
            page.select_option('#filters select[name="code"]', "24390")
            page.click("#filters button")
            expect(page.locator("table.rows tbody tr")).to_have_count(20)
            page.select_option('#filters select[name="code"]', "")
            page.select_option('#filters select[name="column_filter"]', "Due Dte")
            page.click("#filters button")
            expect(page.locator("table.rows tbody tr")).to_have_count(10)
            look("serve-7-check-20000")
            # Every 9999 of the contacts replaced at once; one of them taken back.
            page.fill('#replace input[name="find"]', "9999")
            page.select_option('#replace select[name="column"]', "Contact ID")
            page.fill('#replace input[name="to"]', "12")
            page.click("#replace button")
            expect(page.locator(".counts")).to_contain_text("10 invalid")
            expect(page.locator("#corrections tbody tr")).to_have_count(20)
            page.locator("#corrections tbody tr").first.locator("button").click()
            expect(page.locator(".counts")).to_contain_text("11 invalid")
            expect(page.locator("#corrections tbody tr")).to_have_count(19)
            # Any cell of a valid row is edited too.
            page.goto(address.rstrip("/") + page.url.split(address.rstrip("/"), 1)[1].split("?")[0])
            row = page.locator("#row-3")
            row.locator("details.edit summary").click()
            row.locator('select[name="column"]').select_option("Notes")
            row.locator('input[name="value"]').fill("called back")
            row.locator("button").click()
            expect(page.locator("#row-3 td.fixed")).to_have_text("called back")

            # The import; a second one meanwhile waits its turn, saying for which.
            page.click("#import")
            expect(page.locator("#done")).not_to_have_text("0")
            other = browser.new_page(viewport={"width": width, "height": 900})
            small = tmp_path / "small.csv"
            small.write_text("name,endDatetime\nThe other one,2026-12-05 10:00\n", "utf-8")
            other.goto(address)
            other.set_input_files("#file", str(small))
            other.click("form#upload button[type=submit]")
            other.click("button[name=next][value=check]")
            other.click("#import")
            expect(other.locator("h2")).to_have_text("Waiting for its turn")
            expect(other.locator("main")).to_contain_text("legacy-tasks.csv")
            look.page = other
            look("serve-9-waiting")
            # The first, stopped partway: the page says how many rows went; then the
            # second starts by itself.
            page.click("form[action$='/stop'] button")
            expect(page.locator("#stopped")).to_contain_text("of 20000 rows", timeout=60_000)
            look.page = page
            look("serve-8-stopped")
            stopped = page.locator("#stopped").inner_text()
            counts = page.locator(".counts").inner_text()
            expect(other.locator("h2")).to_have_text("Done", timeout=60_000)
            expect(other.locator(".counts")).to_contain_text("1 created")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    found = re.search(r"after (\d+) of 20000 rows, (\d+) of them sent to iVvy; (\d+) were "
                      r"not sent", stopped)  # fmt: skip
    assert found, stopped
    through, sent, left = (int(found.group(n)) for n in (1, 2, 3))
    assert 0 < through < 20_000 and left == 20_000 - through, stopped
    created = int(re.search(r"(\d+) created", counts).group(1))
    assert sent == created  # (no update, no failure here)
    tasks = [t for t in sandbox.tasks() if t["name"] != "The other one"]
    assert len(tasks) == created  # exactly the rows it says were created, each once
    assert len({t["name"] for t in tasks}) == created
    assert len(sandbox.tasks()) == created + 1  # and the one queued after it
    for task in tasks:
        n = int(task["name"].split()[1]) - 3
        # Written in Sydney (UTC+11 in December): 10:00 on the 1st is 23:00 UTC the day before.
        day = 1 + n % 28
        utc = "2026-11-30 23:00:00 UTC" if day == 1 else f"2026-12-{day - 1:02d} 23:00:00 UTC"
        assert task["endDatetime"] == utc, task
        if n % 4 == 0:
            assert task["status"] == 4, task  # "Done", mapped to Completed
    by_name = {t["name"]: t for t in tasks}
    assert "called back" in by_name.get("Task 3", {}).get("description", "called back")
