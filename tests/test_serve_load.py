"""The page under a heavy file: every other request is answered while a large file is checked
(how fast is a figure of ``benchmarks/serve_answers.py``, not asserted here), and SIGTERM ends the
server, whatever it is doing, with its temporary folders gone."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from .test_serve_browser import start_page
from .test_serve_http import csrf_of, upload

ROWS = 150_000


def big_sheet(rows: int = ROWS) -> str:
    lines = ["name,endDatetime,priority,description"]
    lines += [f"Task {n},2026-12-{n % 28 + 1:02d} 10:00,high,row {n}" for n in range(rows)]
    lines[rows // 2] = "Broken,2026-02-31 10:00,high,a bad date"  # row rows // 2 + 1
    return "\n".join(lines) + "\n"


def checking_meanwhile(client: httpx.Client, base: str) -> tuple[threading.Thread, list]:
    """The check of ``base`` started in a thread; the list gets its answer when it ends."""
    token = csrf_of(client, base.rsplit("/u/", 1)[0] + "/")
    answers: list = []

    def check() -> None:
        with httpx.Client(cookies=client.cookies, timeout=300) as own:
            answers.append(own.post(f"{base}/check", data={"csrf": token}))

    thread = threading.Thread(target=check)
    thread.start()
    return thread, answers


def test_other_requests_are_answered_while_a_large_file_is_checked(served):
    address = served()
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        mapped = upload(client, address, big_sheet())
        base = str(mapped.url).rsplit("/", 1)[0]
        thread, answers = checking_meanwhile(client, base)
        time.sleep(0.3)  # the check is under way
        seen_while_checking = 0
        for _ in range(20):
            home = client.get(address)
            progress = client.get(f"{base}/progress")
            assert home.status_code == 200 and progress.status_code == 200
            if not answers:  # answered before the check ended
                seen_while_checking += 1
            time.sleep(0.05)
        thread.join(timeout=300)
        assert answers and answers[0].status_code == 303
        assert seen_while_checking >= 10, seen_while_checking
        assert "1 invalid" in client.get(f"{base}/check").text


def test_sigterm_ends_the_server_mid_check_and_removes_its_temporary_folders(
    sandbox, tmp_path, monkeypatch
):
    scratch = tmp_path / "tmp"  # the server's own temporary folder, watched alone
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    before: set[str] = set()
    process, address = start_page(sandbox, tmp_path, "--sandbox")
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        mapped = upload(client, address, big_sheet())
        base = str(mapped.url).rsplit("/", 1)[0]
        made = {p.name for p in scratch.glob("task-import-*")} - before
        assert any(name.startswith("task-import-serve-") for name in made)
        thread, answers = checking_meanwhile(client, base)
        time.sleep(0.5)
        assert not answers  # still checking
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    thread.join(timeout=30)
    left = {p.name for p in scratch.glob("task-import-*")} - before
    assert left == set(), left
