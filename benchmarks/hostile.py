"""What the hostile corpus costs: each file of ``tests/data/hostile`` through
``task-import validate FILE --offline`` in a fresh process, with its verdict (exit code and the
start of its message), its seconds, and its peak memory (``ru_maxrss`` of the command, which
counts the workbook reader's child process too). And the page: how fast it answers other
requests while it checks a large file, and how long SIGTERM takes to end it then.

    python -m benchmarks.hostile [--rows 400000]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from importer.sandbox import SandboxServer
from tests.test_hostile import make, validate_offline
from tests.test_serve_browser import start_page
from tests.test_serve_http import csrf_of, upload
from tests.test_serve_load import big_sheet


def corpus(folder: Path) -> None:
    print(f"{'file':28} {'size':>12} {'exit':>4} {'seconds':>8} {'peak MB':>8}  message")
    for name in make.FILES:
        path = make.make(name, folder)
        code, err, seconds, peak = validate_offline(path)
        said = err.strip().split(": ", 2)[-1][:90]
        size = path.stat().st_size
        print(f"{name:28} {size:>12,} {code:>4} {seconds:>8.2f} {peak:>8.0f}  {said}")


def page(rows: int, folder: Path) -> None:
    with SandboxServer() as sandbox:
        process, address = start_page(sandbox, folder, "--sandbox")
        try:
            with httpx.Client(follow_redirects=True, timeout=600) as client:
                made = time.perf_counter()
                mapped = upload(client, address, big_sheet(rows))
                seconds = time.perf_counter() - made
                print(f"upload of {rows:,} rows and its Map step: {seconds:.1f} s")
                base = str(mapped.url).rsplit("/", 1)[0]
                token = csrf_of(client, address)
                done = threading.Event()
                took: list[float] = []

                def check() -> None:
                    began = time.perf_counter()
                    with httpx.Client(cookies=client.cookies, timeout=600) as own:
                        own.post(f"{base}/check", data={"csrf": token})
                    took.append(time.perf_counter() - began)
                    done.set()

                threading.Thread(target=check).start()
                time.sleep(0.2)
                answers = []
                while not done.is_set():
                    began = time.perf_counter()
                    client.get(address)
                    answers.append((time.perf_counter() - began) * 1000)
                    time.sleep(0.05)
                p95 = sorted(answers)[int(len(answers) * 0.95)]
                print(
                    f"check of {rows:,} rows: {took[0]:.1f} s; meanwhile {len(answers)} home "
                    f"pages, answered in median {statistics.median(answers):.0f} ms, p95 "
                    f"{p95:.0f} ms, max {max(answers):.0f} ms, "
                    f"{sum(a > 100 for a in answers)} over 100 ms"
                )
                fixed = time.perf_counter()
                client.post(f"{base}/fix", data={"csrf": token, "row": str(rows // 2 + 1),
                            "column": "endDatetime", "value": "2026-12-09 10:00"})  # fmt: skip
                seconds = time.perf_counter() - fixed
                print(f"a fix of one row, checked again alone, and its check page: {seconds:.1f} s")
                cookies = client.cookies

                def check_again() -> None:
                    with contextlib.suppress(httpx.HTTPError):  # the server stops mid-answer
                        httpx.post(f"{base}/check", data={"csrf": token}, cookies=cookies)

                threading.Thread(target=check_again).start()
                time.sleep(1.0)
                began = time.perf_counter()
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=60)
                seconds = time.perf_counter() - began
                print(f"SIGTERM mid-check: ended in {seconds:.2f} s, exit {code}")
        finally:
            if process.poll() is None:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=400_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        corpus(Path(folder))
        page(args.rows, Path(folder))


if __name__ == "__main__":
    main()
