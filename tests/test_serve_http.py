"""The import page over HTTP (a real server on loopback): the access token beyond loopback,
CSRF, the upload limit, cells shown as text, and nothing of the secret in any answer."""

from __future__ import annotations

import re
import time

import httpx

from importer.serve._state import safe_name

from .test_serve_browser import start_page

SCRIPT = "<script>alert(1)</script>"


def csrf_of(client: httpx.Client, address: str) -> str:
    page = client.get(address)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def upload(client: httpx.Client, address: str, text: str | bytes, name: str = "t.csv", csrf=None):
    """Upload ``text`` (a CSV's text, or a file's bytes) as ``name``; the answer."""
    token = csrf if csrf is not None else csrf_of(client, address)
    sent = (name, text.encode("utf-8"), "text/csv") if isinstance(text, str) else (name, text)
    return client.post(f"{address}upload", data={"csrf": token}, files={"file": sent})


def imported(client: httpx.Client, base: str, token: str) -> dict:
    """Start the upload's import (``base``: its address) and wait for its end; its progress."""
    client.post(f"{base}/import", data={"csrf": token})
    deadline = time.monotonic() + 60
    while not (progress := client.get(f"{base}/progress").json())["finished"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return progress


def checked(client: httpx.Client, base: str, **query: str) -> httpx.Response:
    """The check page after a check of the rows (a POST: checking writes the verdicts and
    reads from iVvy); ``base`` is the upload's address, without its step."""
    base = base.removesuffix("/check").removesuffix("/map")
    token = csrf_of(client, base.rsplit("/u/", 1)[0] + "/")
    return client.post(f"{base}/check", data={"csrf": token, **query}, follow_redirects=True)


def test_beyond_loopback_every_request_needs_the_printed_token(served):
    address = served("--host", "127.0.0.2")  # loopback, but not the usual address
    assert "?token=" in address
    base = address.split("?token=")[0]
    with httpx.Client() as client:
        refused = client.get(base)
        assert refused.status_code == 403 and "token" in refused.text
        assert client.get(f"{base}?token=wrong").status_code == 403
        assert client.get(f"{base}static/page.js").status_code == 403
        admitted = client.get(address)
        assert admitted.status_code == 200
        assert "ivvy_token" in admitted.headers["set-cookie"]
        assert client.get(base).status_code == 200  # the cookie carries it from now on
    with httpx.Client() as other:
        assert other.get(base).status_code == 403


def test_on_loopback_no_token_is_asked(served):
    address = served()
    assert "token" not in address
    assert httpx.get(address).status_code == 200


def test_a_post_without_the_form_s_token_or_from_another_site_is_refused(served):
    address = served()
    with httpx.Client() as client:
        missing = upload(client, address, "name,endDatetime\nA,2026-12-01\n", csrf="")
        assert missing.status_code == 403 and "token" in missing.text
        wrong = upload(client, address, "name,endDatetime\nA,2026-12-01\n", csrf="forged")
        assert wrong.status_code == 403
        token = csrf_of(client, address)
        foreign = client.post(
            f"{address}upload",
            data={"csrf": token},
            files={"file": ("t.csv", b"name\nA\n", "text/csv")},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403 and "another site" in foreign.text
        good = upload(client, address, "name,endDatetime\nA,2026-12-01\n")
        assert good.status_code == 303 and "/map" in good.headers["location"]
    # A browser elsewhere has no cookie: the token copied from a page is not enough.
    with httpx.Client() as stranger:
        stolen = upload(stranger, address, "name\nA\n", csrf=token)
        assert stolen.status_code == 403


def test_an_upload_over_the_limit_is_refused_with_a_clear_message(served):
    address = served("--max-upload-mb", "1")
    big = "name,endDatetime\n" + "A task with a long name,2026-12-01\n" * 40_000  # ~1.4 MB
    with httpx.Client() as client:
        answer = upload(client, address, big)
    assert answer.status_code == 413
    assert "larger than 1 MB" in answer.text and "task-import run" in answer.text


def test_cells_are_shown_as_text(served, sandbox):
    address = served()
    text = (
        "name,endDatetime,description\n"
        f'"{SCRIPT}",2026-12-01,"=HYPERLINK(""http://x"",""y"")"\n'
        "B,31/02/2026,<b>bold</b>\n"
    )
    with httpx.Client(follow_redirects=True) as client:
        mapped = upload(client, address, text)
        check = checked(client, str(mapped.url))
    for page in (mapped.text, check.text):
        assert SCRIPT not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in check.text
    assert "=HYPERLINK(&#34;http://x&#34;,&#34;y&#34;)" in check.text
    assert "default-src 'self'" in check.headers["content-security-policy"]


def test_nothing_of_the_secret_reaches_any_page(served, sandbox):
    address = served()
    secret = sandbox.config.secret
    seen = []
    with httpx.Client(follow_redirects=True) as client:
        seen.append(client.get(address))
        mapped = upload(client, address, "name,endDatetime\nA,2026-12-01\nB,nope\n")
        seen.append(mapped)
        base = str(mapped.url).rsplit("/", 1)[0]
        seen.append(client.get(f"{base}/mapping.toml"))
        seen.append(checked(client, base))
        seen.append(client.get(f"{base}/corrected"))
        token = csrf_of(client, address)
        seen.append(client.post(f"{base}/import", data={"csrf": token}))
        for _ in range(1200):  # up to a minute
            progress = client.get(f"{base}/progress")
            seen.append(progress)
            if progress.json().get("finished"):
                break
            time.sleep(0.05)
        seen.append(client.get(f"{base}/import"))
        seen.append(client.get(f"{base}/results.xlsx"))
        seen.append(client.get(f"{address}static/page.js"))
    assert progress.json()["finished"]
    assert seen[-2].status_code == 200 and seen[-2].content[:2] == b"PK"
    for answer in seen:
        assert secret not in answer.text and secret.encode() not in answer.content
        assert all(secret not in value for value in answer.headers.values())


def test_uploaded_file_names_stay_in_their_folder():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\tasks.xlsx") == "tasks.xlsx"
    assert safe_name("upload.json") == "sheet_upload.json"
    assert "/" not in safe_name("a/b/<script>.csv")


def test_a_server_killed_mid_import_resumes_it_after_a_restart(make_sandbox, tmp_path):
    import signal
    import time

    server = make_sandbox(latency_ms=20, drop_rate=0.02, random_seed=5)
    rows = "".join(f"Task {n},2026-12-01 10:00\n" for n in range(400))
    process, address = start_page(server, tmp_path, "--settle-s", "0.5")
    with httpx.Client(follow_redirects=True) as client:
        mapped = upload(client, address, "name,endDatetime\n" + rows)
        base = str(mapped.url).rsplit("/", 1)[0]
        client.post(f"{base}/import", data={"csrf": csrf_of(client, address)})
        deadline = time.monotonic() + 60
        while len(server.tasks()) < 50:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no clean stop: the journal and the upload stay
    process.wait(timeout=10)

    process, address = start_page(server, tmp_path, "--settle-s", "0.5")
    try:
        with httpx.Client(follow_redirects=True) as client:
            home = client.get(address)
            assert "stopped before their end" in home.text
            link = re.search(r'href="(/u/[^"]+/import)"', home.text).group(1)
            page = client.get(address.rstrip("/") + link)
            assert "Resume the import" in page.text
            client.post(page.url, data={"csrf": csrf_of(client, address)})
            for _ in range(600):
                state = client.get(str(page.url).replace("/import", "/progress")).json()
                if state.get("finished"):
                    break
                time.sleep(0.1)
            assert state["finished"] and not state.get("interrupted"), state
            assert state["counts"] == {"created": 400}
    finally:
        process.terminate()
        process.wait(timeout=20)
    names = [t["name"] for t in server.tasks()]
    assert len(names) == 400 and len(set(names)) == 400  # every row once


def test_a_workbook_with_several_sheets_asks_which(served, tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["nothing to import here"])
    tasks = book.create_sheet("Tasks")
    tasks.append(["name", "endDatetime"])
    tasks.append(["Call", "2026-12-01 10:00"])
    path = tmp_path / "two.xlsx"
    book.save(path)
    address = served()
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        asked = upload(client, address, path.read_bytes(), "two.xlsx", token)
        assert str(asked.url).endswith("/sheet")
        assert 'value="Notes"' in asked.text and 'value="Tasks"' in asked.text
        mapped = client.post(asked.url, data={"csrf": token, "sheet": "Tasks"})
        assert str(mapped.url).endswith("/map") and "1 rows to import" in mapped.text


def test_a_text_file_that_reads_two_ways_asks_which_and_the_run_reads_it_so(served, sandbox):
    """tests/data/turkish-cp1254.csv reads cleanly as cp1254 (Turkish) and as cp1257 (Baltic):
    the page shows each reading, and the one picked is how the check, and the import, read
    it (iVvy receives the Turkish letters)."""
    from .conftest import REPOSITORY

    data = (REPOSITORY / "tests" / "data" / "turkish-cp1254.csv").read_bytes()
    address = served()
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        asked = upload(client, address, data, "turkish.csv", token)
        assert str(asked.url).endswith("/encoding"), asked.text
        assert 'value="cp1254"' in asked.text and 'value="cp1257"' in asked.text
        assert "Teklif gönder ğ ş ı" in asked.text  # the line as each reads it
        assert "--encoding" not in asked.text
        wrong = client.post(asked.url, data={"csrf": token, "encoding": "utf-16"})
        assert wrong.status_code == 400
        mapped = client.post(asked.url, data={"csrf": token, "encoding": "cp1254"})
        assert str(mapped.url).endswith("/map"), mapped.text
        assert "read as <code>cp1254</code>" in mapped.text and "rows to import" in mapped.text
        base = str(mapped.url).removesuffix("/map")
        page = checked(client, base)
        assert page.status_code == 200
        started = client.post(f"{base}/import", data={"csrf": token})
        assert started.status_code == 200
        deadline = time.monotonic() + 60
        while len(sandbox.tasks()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert "Teklif gönder ğ ş ı" in {t["name"] for t in sandbox.tasks()}


def test_an_unreadable_file_shows_the_reader_s_message(served):
    address = served()
    with httpx.Client(follow_redirects=True) as client:
        page = upload(client, address, "name,endDatetime\nA,2026-12-01,extra\n", name="bad.csv")
    assert "bad.csv, row 2, column &#39;C&#39;" in page.text
    assert "uploads" not in page.text  # the private folder is not shown


def test_the_mapping_download_and_the_corrected_sheet(served, tmp_path):
    from importer.map import load_mapping_file, map_columns

    address = served()
    with httpx.Client(follow_redirects=True) as client:
        mapped = upload(client, address, "Task,When,Colour\nA,2026-12-01,red\nB,nope,blue\n")
        base = str(mapped.url).rsplit("/", 1)[0]
        token = csrf_of(client, address)
        choices = {"column:Task": "name", "column:When": "endDatetime", "column:Colour": ""}
        client.post(f"{base}/map", data={"csrf": token, "profile": "", **choices})
        toml = client.get(f"{base}/mapping.toml")
        check = checked(client, base)
        assert "1 invalid" in check.text
        client.post(f"{base}/fix", data={"csrf": token, "row": "3", "column": "When",
                                          "value": "2026-12-02 09:00"})  # fmt: skip
        asked = client.get(f"{base}/corrected")  # a row was checked alone since: asked
        assert 'id="check-all"' in asked.text and "corrected since" in asked.text
        corrected = client.post(f"{base}/corrected", data={"csrf": token})
    (tmp_path / "m.toml").write_bytes(toml.content)
    mapping_file = load_mapping_file(tmp_path / "m.toml")
    mapping = map_columns(["Task", "When", "Colour"], path="x.csv", mapping_file=mapping_file)
    assert mapping.columns == {"name": "Task", "endDatetime": "When"}
    lines = corrected.content.decode("utf-8-sig").splitlines()
    assert lines[2].startswith("B,2026-12-02 09:00,blue,3,valid")  # the fix, and its verdict


def test_an_upload_stays_until_removed_or_the_server_stops_and_a_crash_leaves_nothing_behind(
    sandbox, tmp_path
):
    import os
    import signal
    import time
    from pathlib import Path

    from .test_serve_browser import start_page as start

    uploads = Path(os.environ["XDG_DATA_HOME"]) / "ivvy-task-importer" / "uploads"

    def finish(client, base):
        client.post(f"{base}/import", data={"csrf": csrf_of(client, base + "/import")})
        for _ in range(1200):  # up to a minute, for a loaded machine
            if client.get(f"{base}/progress").json().get("finished"):
                return
            time.sleep(0.05)

    process, address = start(sandbox, tmp_path)
    try:
        with httpx.Client(follow_redirects=True) as client:
            first = upload(client, address, "name,endDatetime\nA,2026-12-01\n")
            base = str(first.url).rsplit("/", 1)[0]
            folder = uploads / base.rsplit("/", 1)[1]
            assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"
            finish(client, base)
            # Downloading changes nothing: Back and every step still answer.
            assert client.get(f"{base}/results.xlsx").content[:2] == b"PK"
            assert folder.is_dir() and client.get(f"{base}/map").status_code == 200
            removed = client.post(f"{base}/remove", data={"csrf": csrf_of(client, address)})
            assert removed.status_code == 200 and not folder.exists()
            assert client.get(f"{base}/map").status_code == 404
            second = upload(client, address, "name,endDatetime\nB,2026-12-01\n")
            other = uploads / str(second.url).rsplit("/", 2)[1]
            assert other.is_dir()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert not other.exists()  # a clean stop removes what was not imported

    # A server killed: what it left is removed when the page starts again, but for a run
    # that was started and stopped (it is resumed from the home page).
    process, address = start(sandbox, tmp_path)
    with httpx.Client(follow_redirects=True) as client:
        left = upload(client, address, "name,endDatetime\nC,2026-12-01\n")
        orphan = uploads / str(left.url).rsplit("/", 2)[1]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=20)
    assert orphan.is_dir()
    process, address = start(sandbox, tmp_path)
    process.terminate()
    process.wait(timeout=20)
    assert not orphan.exists()


def test_a_correction_re_checks_its_row_alone_unless_the_whole_column_reads_anew(served):
    import os
    from pathlib import Path

    address = served()
    uploads = Path(os.environ["XDG_DATA_HOME"]) / "ivvy-task-importer" / "uploads"
    rows = [f"Task {n},2026-12-{n % 28 + 1:02d} 10:00,high" for n in range(300)]
    rows[10] = "Bad date,2026-02-31 10:00,high"
    rows[20] = "Bad priority,2026-12-05 10:00,burning"
    text = "name,endDatetime,priority\n" + "\n".join(rows) + "\n"
    with httpx.Client(follow_redirects=True) as client:
        base = str(upload(client, address, text).url).rsplit("/", 1)[0]
        folder = uploads / base.rsplit("/", 1)[1]
        first = checked(client, base).text
        assert "2 invalid" in first and "298 valid" in first
        validation = next(folder.glob("*.validation.csv"))
        written = validation.stat().st_mtime_ns
        token = csrf_of(client, address)
        fixed = client.post(
            f"{base}/fix",
            data={"csrf": token, "row": "12", "column": "endDatetime", "value": "2026-12-09 10:00"},
        )
        assert "1 invalid" in fixed.text and "299 valid" in fixed.text
        assert "299</span> create" in fixed.text
        # Row 12 alone was checked again: the sheet of every row was not written again.
        assert validation.stat().st_mtime_ns == written
        again = next(folder.glob("*.recheck.csv")).read_text(encoding="utf-8-sig")
        assert again.count("\n") == 2 and "2026-12-09 10:00" in again
        assert 'id="row-12" class="valid"' in fixed.text
        # Taken back: the row is invalid again, still without a check of every row.
        undone = client.post(
            f"{base}/unfix", data={"csrf": token, "row": "12", "column": "endDatetime"}
        )
        assert "2 invalid" in undone.text and validation.stat().st_mtime_ns == written
        # A correction that changes how the whole column reads (13/04 decides day first):
        # every row is checked again.
        client.post(
            f"{base}/fix",
            data={"csrf": token, "row": "22", "column": "endDatetime", "value": "13/04/2026 10:00"},
        )
        assert validation.stat().st_mtime_ns != written


def test_a_second_import_waits_its_turn_then_runs_and_the_home_page_lists_both(
    make_sandbox, tmp_path
):
    """Imports share the target's journal: a second one started while the first runs waits
    its turn (saying so, and naming the first), then runs by itself; the home page lists the
    imports going on, so a closed tab is not a dead end. Each row is made once."""
    server = make_sandbox(latency_ms=20)
    process, address = start_page(server, tmp_path)
    try:
        with httpx.Client(follow_redirects=True, timeout=60) as client:
            token = csrf_of(client, address)
            first = "".join(f"Alpha {n},2026-12-01 10:00\n" for n in range(300))
            a = str(upload(client, address, "name,endDatetime\n" + first, "alpha.csv", token).url)
            b = str(upload(client, address, "name,endDatetime\nBeta,2026-12-02 10:00\n",
                           "beta.csv", token).url)  # fmt: skip
            a, b = a.removesuffix("/map"), b.removesuffix("/map")
            client.post(f"{a}/import", data={"csrf": token})
            waiting = client.post(f"{b}/import", data={"csrf": token})
            assert "Waiting for its turn" in waiting.text and "alpha.csv" in waiting.text
            assert client.get(f"{b}/progress").json()["queued"] is True
            home = client.get(address).text
            assert "Imports going on" in home and f'href="/u/{b.rsplit("/", 1)[1]}/import"' in home
            assert "waiting for its turn" in home
            # A third, stopped while it waits: it stops at once, and nothing of it is sent.
            c = str(upload(client, address, "name,endDatetime\nGamma,2026-12-03 10:00\n",
                           "gamma.csv", token).url).removesuffix("/map")  # fmt: skip
            assert "Waiting for its turn" in client.post(f"{c}/import", data={"csrf": token}).text
            stopped = client.post(f"{c}/stop", data={"csrf": token})
            assert "Start the import" in stopped.text
            assert client.get(f"{c}/progress").json()["finished"] is True
            deadline = time.monotonic() + 90
            while not client.get(f"{b}/progress").json()["finished"]:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert client.get(f"{a}/progress").json()["counts"] == {"created": 300}
            done = client.get(f"{b}/progress").json()
            assert done["error"] is None and done["counts"] == {"created": 1}
    finally:
        process.terminate()
        process.wait(timeout=20)
    names = [t["name"] for t in server.tasks()]
    assert len(names) == 301 and len(set(names)) == 301


def test_every_dead_end_has_a_way_on(served, tmp_path):
    """A file the page cannot map (empty, malformed, a sheet with no table) shows its error on
    the Map step with a way to upload another file or pick another sheet; an upload that is
    gone answers a page with a way on; after an import and its download, every step answers
    a page, never a bare error."""
    import openpyxl

    address = served()
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        for name, body in (("empty.csv", ""), ("bad.csv", "name,endDatetime\nA,2026,x\n")):
            page = upload(client, address, body, name, token)
            assert page.status_code == 400 and 'href="/"' in page.text
            assert "Upload another file" in page.text and "Read it in another encoding" in page.text
        book = openpyxl.Workbook()
        book.active.title = "Notes"
        book.active.append(["1", 2])
        book.create_sheet("Tasks").append(["name", "endDatetime"])
        book["Tasks"].append(["Call", "2026-12-01 10:00"])
        path = tmp_path / "two.xlsx"
        book.save(path)
        asked = upload(client, address, path.read_bytes(), "two.xlsx", token)
        wrong = client.post(asked.url, data={"csrf": token, "sheet": "Notes"})
        assert wrong.status_code == 400 and "Pick another sheet" in wrong.text
        base = str(wrong.url).removesuffix("/map")
        assert f'href="/u/{base.rsplit("/", 1)[1]}/sheet"' in wrong.text
        right = client.post(f"{base}/sheet", data={"csrf": token, "sheet": "Tasks"})
        assert "1 rows to import" in right.text
        checked(client, base)
        imported(client, base, token)
        assert client.get(f"{base}/results.xlsx").status_code == 200
        for step in ("map", "check", "import", "sheet", "encoding", "corrected", "to-fix.xlsx"):
            answer = client.get(f"{base}/{step}")
            assert answer.status_code == 200, (step, answer.status_code, answer.text[:200])
            assert answer.headers["content-type"].startswith(
                ("text/html", "application/vnd.openxmlformats")
            ), step
        client.post(f"{base}/remove", data={"csrf": token})
        gone = client.get(f"{base}/map")
        assert gone.status_code == 404 and "<h2>No such upload</h2>" in gone.text
        assert 'href="/"' in gone.text


def test_a_wrong_secret_stops_the_page_at_its_start_saying_what_to_fix(sandbox):
    """The page checks the credentials before it starts: a secret the account refuses ends it
    (exit 2) with what to fix, instead of a 401 shown on the page at the first import."""
    import os
    import subprocess
    import sys

    from .test_cli_run import env_for

    env = {**os.environ, **env_for(sandbox), "IVVY_API_SECRET": "not-the-secret"}
    done = subprocess.run([sys.executable, "-m", "importer.cli", "serve", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "refused the API key" in said and "check IVVY_API_KEY and IVVY_API_SECRET" in said
    assert "Traceback" not in done.stderr and "not-the-secret" not in done.stderr
    assert "The import page" not in done.stderr


def test_the_map_step_takes_the_settings_a_run_takes_and_names_no_command_line_option(
    served, sandbox
):
    """Dates like 03/04/2026 in a sheet written in Sydney: the page says the date order is to
    be chosen, in its own words (no "--date-order"); the time zone and the date order given
    under Settings are how the check and the import read the dates (iVvy receives UTC)."""
    address = served()
    sheet = "name,endDatetime\nCall,03/04/2026 10:00\nSend,05/06/2026 10:00\n"
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "sydney.csv", token)
        assert "read as UTC unless you name the zone" in mapped.text
        base = str(mapped.url).removesuffix("/map")
        first = checked(client, base)
        assert "ambiguous" in first.text and "date order, day first or month first" in first.text
        assert "--date-order" not in first.text
        form = {"csrf": token, "profile": "", "column:name": "name",
                "column:endDatetime": "endDatetime", "next": "map"}  # fmt: skip
        bad = client.post(f"{base}/map", data={**form, "setting:timezone": "Sydney"})
        assert bad.status_code == 400 and "not an IANA zone" in bad.text
        assert f'href="/u/{base.rsplit("/", 1)[1]}/map"' in bad.text  # a way back
        saved = client.post(f"{base}/map", data={**form, "setting:timezone": "Australia/Sydney",
                                                 "setting:date_order": "dmy"})  # fmt: skip
        assert "2 rows to import" in saved.text, saved.text
        assert 'value="Australia/Sydney"' in saved.text and 'value="dmy" selected' in saved.text
        checked(client, base)
        imported(client, base, token)
    due = {t["name"]: t["endDatetime"] for t in sandbox.tasks()}
    assert due == {"Call": "2026-04-02 23:00:00 UTC", "Send": "2026-06-05 00:00:00 UTC"}


def test_the_map_step_shows_samples_and_field_names_and_refuses_one_field_twice(served):
    """Each column with its first two values; each field by its name on the page with the
    API's name beside and the required ones marked; two columns mapped to one field refused
    (with a way back), the mapping left as it was."""
    address = served()
    sheet = (
        "Subject,Due,Notes\nCall the venue,2026-12-01 10:00,ask\n,2026-12-02 10:00,\n"
        "Send,2026-12-03,ok\n"
    )
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "tasks.csv", token)
        assert "<q>Call the venue</q>, <q>Send</q>" in mapped.text  # blanks skipped
        assert "<q>ask</q>, <q>ok</q>" in mapped.text
        assert "Task name (name) · required" in mapped.text
        assert "Due date (and time) (endDatetime) · required" in mapped.text
        assert "Description (description)<" in mapped.text
        base = str(mapped.url).removesuffix("/map")
        twice = client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "column:Subject": "name", "column:Due": "endDatetime",
            "column:Notes": "name", "next": "map"})  # fmt: skip
        assert twice.status_code == 400
        import html

        assert "'Subject' and 'Notes' both feed Task name" in html.unescape(twice.text)
        assert f'href="/u/{base.rsplit("/", 1)[1]}/map"' in twice.text
        again = client.get(f"{base}/map")
        notes = again.text.split('data-column="Notes">', 1)[1].split("</select>", 1)[0]
        assert 'value="description" selected' in notes  # as the page mapped it, unchanged


def test_the_map_step_chooses_a_close_did_you_mean_and_offers_a_less_sure_one(served):
    """ "Due Dte" is one letter from a known header: the Map step chooses Due date for it, says
    it is a guess, and the run uses it only once the form is saved. "Stauts" is less alike:
    offered beside, not chosen. A field another column feeds is never guessed again."""
    import html

    address = served()
    sheet = "Subject,Due Dte,Stauts,Subjct\nCall the venue,2026-12-01 10:00,Done,x\n"
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "typos.csv", token)
        shown = html.unescape(mapped.text)

        def chosen(column: str) -> str:
            select = shown.split(f'data-column="{column}">', 1)[1].split("</select>", 1)[0]
            picked = re.search(r'<option value="([^"]*)" selected', select)
            assert picked is not None, select
            return picked.group(1)

        assert chosen("Due Dte") == "endDatetime"
        assert "a guess: the header looks like Due date (and time)'s" in shown
        assert chosen("Stauts") == ""  # less sure: offered, not chosen
        assert "did you mean Status?" in shown
        assert 'data-column="Stauts" data-field="status">Use Status</button>' in shown
        assert chosen("Subjct") == ""  # Subject feeds the name already
        # Not yet part of the mapping: the check would still miss the due date.
        base = str(mapped.url).removesuffix("/map")
        assert '"Due Dte" = "ignore"' in client.get(f"{base}/mapping.toml").text
        saved = client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "column:Subject": "name",
            "column:Due Dte": "endDatetime", "column:Stauts": "status", "column:Subjct": "",
            "next": "check"})  # fmt: skip
        assert saved.status_code == 200 and str(saved.url).endswith("/check"), saved.text[-500:]
        toml = client.get(f"{base}/mapping.toml").text
        assert '"Due Dte" = "endDatetime"' in toml and '"Stauts" = "status"' in toml
        assert "Import the 1 valid rows" in saved.text


def test_the_map_step_shows_the_header_row_and_takes_another(served, sandbox):
    """A first row of text as wide as the table is taken for the header; the Map step says
    which row the names come from, and row 2 given there maps the real names, checks and
    imports with them. A row with nothing below is refused with the form still there (a way
    on), and emptied the importer's own choice is back."""
    import html

    address = served()
    sheet = ("Exported by,Zoho,on Monday\nname,endDatetime,description\n"
             "Call the venue,2026-12-01 10:00,ask\nSend,2026-12-02 10:00,ok\n")  # fmt: skip
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "titled.csv", token)
        assert 'id="header-row" value="1"' in mapped.text and "found by the importer" in mapped.text
        assert 'data-column="Exported by"' in mapped.text
        base = str(mapped.url).removesuffix("/map")
        again = client.post(f"{base}/header", data={"csrf": token, "header_row": "2"})
        assert str(again.url).endswith("/map") and 'id="header-row" value="2"' in again.text
        assert 'data-column="endDatetime"' in again.text and "Exported by" not in again.text
        assert "2 rows to import" in again.text
        checked = client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "setting:header_row": "2", "column:name": "name",
            "column:endDatetime": "endDatetime", "column:description": "description",
            "next": "check"})  # fmt: skip
        assert "Import the 2 valid rows" in checked.text, checked.text[-2000:]
        assert imported(client, base, token)["counts"] == {"created": 2}
        made = {t["name"]: t.get("description") or "" for t in sandbox.tasks()}
        assert set(made) == {"Call the venue", "Send"}  # the title row sent as nothing
        assert "ask" in made["Call the venue"] and "ok" in made["Send"]
        wrong = client.post(f"{base}/header", data={"csrf": token, "header_row": "4"})
        shown = html.unescape(wrong.text)
        assert "no data rows below the header" in shown and 'id="header-form"' in shown
        bad = client.post(f"{base}/header", data={"csrf": token, "header_row": "two"})
        assert bad.status_code == 400 and "is not a row's number" in html.unescape(bad.text)
        back = client.post(f"{base}/header", data={"csrf": token, "header_row": ""})
        assert 'id="header-row" value="1"' in back.text


def test_any_cell_is_editable_and_a_priority_is_chosen_from_its_values(served, sandbox):
    """A bad priority is fixed from a dropdown of the values the importer reads; a valid row's
    other cell is edited too (not only the flagged one); the import sends both as edited."""
    address = served()
    sheet = "name,endDatetime,priority\nCall,2026-12-01 10:00,urgent\nSend,2026-12-02 10:00,low\n"
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "edit.csv", token)
        base = str(mapped.url).removesuffix("/map")
        page = client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "column:name": "name",
            "column:endDatetime": "endDatetime", "column:priority": "priority",
            "next": "check"})  # fmt: skip
        bad = page.text.split('id="row-2"', 1)[1].split("</tr>", 1)[0]
        assert 'class="choose"' in bad
        assert '<option value="urgent" selected>urgent (as written)</option>' in bad
        assert all(f'<option value="{p}">{p}</option>' in bad for p in ("low", "medium", "high"))
        good = page.text.split('id="row-3"', 1)[1].split("</tr>", 1)[0]
        assert "Edit a cell" in good and 'aria-label="column to edit on row 3"' in good
        client.post(f"{base}/fix", data={"csrf": token, "row": "2", "column": "priority",
                                         "value": "high"})  # fmt: skip
        after = client.post(f"{base}/fix", data={"csrf": token, "row": "3", "column": "name",
                                                 "value": "Send the menu"})  # fmt: skip
        assert "Import the 2 valid rows" in after.text
        assert imported(client, base, token)["counts"] == {"created": 2}
    made = {t["name"]: t.get("priority") for t in sandbox.tasks()}
    assert made == {"Call": "high", "Send the menu": "low"}


def test_the_rows_not_imported_are_fixed_on_the_done_page_and_sent_again(served, sandbox):
    """After an import, the done page lists the invalid row with its reason; corrected there,
    it is sent again from there (no download, no upload): the rows already imported are not
    created twice."""
    import html

    address = served()
    sheet = ("name,endDatetime,priority\nCall,2026-12-01 10:00,high\n"
             "Send,2026-12-02 10:00,urgent\nBook,2026-12-03 10:00,low\n")  # fmt: skip
    with httpx.Client(follow_redirects=True) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "done.csv", token)
        base = str(mapped.url).removesuffix("/map")
        client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "column:name": "name",
            "column:endDatetime": "endDatetime", "column:priority": "priority",
            "next": "check"})  # fmt: skip
        assert imported(client, base, token)["counts"] == {"created": 2, "invalid": 1}
        done = html.unescape(client.get(f"{base}/import").text)
        # The shape of the run, as bars drawn on the page (SVG: no script), each said in words.
        assert '<desc id="chart-results-text">created: 2; invalid: 1</desc>' in done
        assert '<desc id="chart-codes-text">23016: 1</desc>' in done
        listed = done.split('id="not-imported"', 1)[1]
        assert 'id="row-3"' in listed and "urgent" in listed and 'id="row-2"' not in listed
        assert "invalid:" in listed
        fixed = client.post(f"{base}/fix", data={"csrf": token, "row": "3",
                                                 "column": "priority", "value": "high",
                                                 "back": "import"})  # fmt: skip
        assert str(fixed.url).endswith("/import#row-3")
        assert "→ <ins>high</ins>" in fixed.text and "(with your corrections)" in fixed.text
        client.post(f"{base}/import", data={"csrf": token, "again": "1"})
        deadline = time.monotonic() + 60
        while not (state := client.get(f"{base}/progress").json())["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state["counts"].get("created") == 1 and "invalid" not in state["counts"], state
        assert 'id="not-imported"' not in client.get(f"{base}/import").text
    names = sorted(t["name"] for t in sandbox.tasks())
    assert names == ["Book", "Call", "Send"]  # each once
    assert {t["name"]: t["priority"] for t in sandbox.tasks()}["Send"] == "high"


def test_the_check_view_pages_through_every_row_and_filters_by_code_and_column(served):
    """1,200 rows, 600 with a bad priority and 100 with a bad due date: in errors-only mode the
    second page holds errors 501 to 700 (before, only the first 500 rows were reachable);
    a code and a column pick their rows; a fix on page 2 comes back to page 2."""
    lines = []
    for n in range(1200):
        priority = "urgent" if n % 2 == 0 else "high"
        due = "someday" if n % 12 == 1 else "2026-12-01 10:00"
        lines.append(f"Task {n},{due},{priority},Done")
    sheet = "name,endDatetime,priority,status\n" + "\n".join(lines) + "\n"
    address = served()
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        token = csrf_of(client, address)
        base = str(upload(client, address, sheet, "many.csv", token).url).removesuffix("/map")
        page = checked(client, base, errors_only="1")
        assert "Rows 1–500 of 700 (of 1200 in all)" in page.text and "page 1 of 2" in page.text
        second = client.get(f"{base}/check?errors=1&page=2")
        assert "Rows 501–700 of 700" in second.text
        assert 'id="row-1200"' in second.text and 'id="row-2"' not in second.text
        codes = re.findall(r'<td><a href="\?errors=1&amp;code=([^"]+)">', page.text)
        assert len(codes) == 2
        by_code = {c: client.get(f"{base}/check?errors=1&code={c}").text for c in codes}
        counts = sorted(re.search(r"(?:Rows 1–\d+ of )(\d+)", t).group(1) for t in by_code.values())
        assert counts == ["100", "600"]
        due_only = client.get(f"{base}/check?errors=1&column_filter=endDatetime").text
        assert "Rows 1–100 of 100" in due_only and 'id="row-3"' in due_only
        fixed = client.post(f"{base}/fix", data={
            "csrf": token, "row": "1191", "column": "endDatetime", "value": "2026-12-05 10:00",
            "errors": "1", "page": "2"})  # fmt: skip
        assert "errors=1&page=2" in str(fixed.url)  # back where the fix was made
        assert "Rows 501–699 of 699" in fixed.text


def test_a_stopped_import_says_how_many_rows_it_sent(make_sandbox, tmp_path):
    """Stopped from its page, an import says how far it got (rows done, rows not sent) beside
    the button that resumes it; the sandbox holds as many tasks as it says were created."""
    server = make_sandbox(latency_ms=30)
    rows = "".join(f"Task {n},2026-12-01 10:00\n" for n in range(400))
    process, address = start_page(server, tmp_path)
    try:
        with httpx.Client(follow_redirects=True, timeout=60) as client:
            token = csrf_of(client, address)
            base = str(upload(client, address, "name,endDatetime\n" + rows, "many.csv",
                              token).url).removesuffix("/map")  # fmt: skip
            client.post(f"{base}/import", data={"csrf": token})
            deadline = time.monotonic() + 60
            while len(server.tasks()) < 20:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            client.post(f"{base}/stop", data={"csrf": token})
            while not client.get(f"{base}/progress").json()["finished"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            page = client.get(f"{base}/import").text
    finally:
        process.terminate()
        process.wait(timeout=20)
    made = len(server.tasks())
    said = re.search(r"It stopped after (\d+) of 400 rows, (\d+) of them sent to iVvy; "
                     r"(\d+) were not sent", page)  # fmt: skip
    assert said is not None, page
    assert int(said.group(1)) + int(said.group(3)) == 400 and 0 < int(said.group(3)) < 400
    assert int(said.group(2)) == made  # the rows sent: the tasks the sandbox holds
    assert f"{made} created" in page and "Resume the import" in page


def test_a_sheet_of_the_same_columns_is_mapped_as_before_and_so_are_the_rows_to_fix(served):
    """The mapping and settings chosen for a sheet are reused for the next sheet of the same
    columns, and for the rows to fix when they come back (a results sheet of ours: its own
    columns are not counted); the page says so."""
    address = served()
    first = "Task,When,Urgency\nCall,2026-12-01 10:00,urgent\nSend,2026-12-02 10:00,high\n"
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        token = csrf_of(client, address)
        base = str(upload(client, address, first, "december.csv", token).url).removesuffix("/map")
        client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "column:Task": "name", "column:When": "endDatetime",
            "column:Urgency": "priority", "setting:timezone": "Australia/Sydney",
            "next": "map"})  # fmt: skip
        checked(client, base)
        imported(client, base, token)
        to_fix = client.get(f"{base}/to-fix.xlsx").content

        again = upload(client, address, "Task,When,Urgency\nBook,2026-12-03 10:00,low\n",
                       "january.csv", token)  # fmt: skip
        assert 'id="reused"' in again.text and "1 rows to import" in again.text
        when = again.text.split('data-column="When">', 1)[1].split("</select>", 1)[0]
        assert 'value="endDatetime" selected' in when
        assert 'value="Australia/Sydney"' in again.text

        back = upload(client, address, to_fix, "december.to-fix.xlsx", token)
        assert 'id="reused"' in back.text and "1 rows to import" in back.text, back.text


def test_the_words_of_priority_and_status_columns_are_read_as_the_person_says(served, sandbox):
    """Every distinct word of the priority and status columns is listed on the Map step with
    how to read it: "urgent" → high and "Closed-won" → 4 Completed, chosen there, are how the
    check and the import read them, and the mapping file to download says so too."""
    address = served()
    sheet = (
        "Task,Due,Urgency,State\nCall,2026-12-01 10:00,urgent,Closed-won\n"
        "Send,2026-12-02 10:00,high,Open\n"
    )
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        token = csrf_of(client, address)
        mapped = upload(client, address, sheet, "crm.csv", token)
        base = str(mapped.url).removesuffix("/map")
        form = {"csrf": token, "profile": "", "column:Task": "name", "column:Due": "endDatetime",
                "column:Urgency": "priority", "column:State": "status", "next": "map"}  # fmt: skip
        shown = client.post(f"{base}/map", data=form)
        assert 'name="value:priority:urgent"' in shown.text
        assert 'name="value:status:Closed-won"' in shown.text and "4 Completed" in shown.text
        bad = client.post(f"{base}/map", data={**form, "value:priority:urgent": "extreme"})
        assert bad.status_code == 400 and "is not one of its values" in bad.text
        client.post(f"{base}/map", data={**form, "value:priority:urgent": "high",
                                          "value:status:Closed-won": "4"})  # fmt: skip
        toml = client.get(f"{base}/mapping.toml").text
        assert '[priority]\n"urgent" = "high"' in toml and '[status]\n"Closed-won" = 4' in toml
        page = checked(client, base)
        assert "2 valid" in page.text, page.text
        imported(client, base, token)
    by_name = {t["name"]: t for t in sandbox.tasks()}
    assert by_name["Call"]["priority"] == "high" and by_name["Call"]["status"] == 4
    assert by_name["Send"]["status"] == 0


def test_replace_all_corrects_every_cell_of_a_value_in_one_column_each_one_taken_back_alone(
    served,
):
    """ "urgent" in three rows' Priority, replaced by "high" at once: each cell is a correction
    of its own (listed, each can be taken back), the rows are checked again, and a value in
    another column is left as it is."""
    sheet = (
        "name,endDatetime,priority,description\nA,2026-12-01 10:00,urgent,urgent\n"
        "B,2026-12-02 10:00,high,\nC,2026-12-03 10:00,urgent,\nD,2026-12-04 10:00, urgent,\n"
    )
    address = served()
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        token = csrf_of(client, address)
        base = str(upload(client, address, sheet, "urgent.csv", token).url).removesuffix("/map")
        assert "3 invalid" in checked(client, base).text
        done = client.post(f"{base}/replace", data={"csrf": token, "column": "priority",
                                                    "find": "urgent", "to": "high"})  # fmt: skip
        assert (
            done.status_code == 200
            and "4 valid" in done.text
            and "invalid"
            not in re.sub(
                r"<option[^>]*>[^<]*</option>", "", done.text.split('class="counts"', 1)[1][:400]
            )
        )
        listed = re.findall(
            r'<tr><td><a href="#row-(\d+)">\d+</a></td><td>priority</td>', done.text
        )
        assert sorted(map(int, listed)) == [2, 4, 5]
        assert "<td>description</td>" not in done.text  # another column's "urgent" is kept
        back = client.post(f"{base}/unfix", data={"csrf": token, "row": "4", "column": "priority"})
        assert "1 invalid" in back.text
        none = client.post(f"{base}/replace", data={"csrf": token, "column": "priority",
                                                    "find": "nowhere", "to": "high"})  # fmt: skip
        assert none.status_code == 400 and "No cell of" in none.text


def test_a_check_whose_rows_cannot_be_kept_says_so_with_a_way_back(served):
    """The check page keeps the checked rows in a table of the upload's folder; when it cannot
    be written (here a folder stands where it goes), the page says why, never a bare 500."""
    import os
    from pathlib import Path

    address = served()
    uploads = Path(os.environ["XDG_DATA_HOME"]) / "ivvy-task-importer" / "uploads"
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        token = csrf_of(client, address)
        mapped = upload(
            client, address, "name,endDatetime\nCall,2026-12-01 10:00\n", "k.csv", token
        )
        base = str(mapped.url).removesuffix("/map")
        (uploads / base.rsplit("/", 1)[1] / "check.sqlite.part").mkdir()
        page = client.post(f"{base}/check", data={"csrf": token})
        assert page.status_code == 400 and 'role="alert"' in page.text, page.text
        assert "Back to the columns" in page.text and "Internal Server Error" not in page.text
        assert str(uploads) not in page.text  # no server path on the page
