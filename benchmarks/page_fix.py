"""How fast the check page answers a correction, on a big sheet.

Starts ``task-import serve --sandbox`` in a process of its own on 127.0.0.1, uploads a CSV of
``--rows`` tasks (one in a thousand with an unknown contact), maps it and checks every row
once, then corrects the faulty rows one by one, as a person would, and times each:

- ``fix``: the POST of the correction, which checks the changed row again and merges it into
  the last full check (the answer is the redirect back to the check page);
- ``page``: the check page that follows (500 rows of it, the faulty ones marked);
- ``full``: the first check of every row, for scale.

    python -m benchmarks.page_fix [--rows 400000] [--fixes 20] [--json]

The figures are medians (and the slowest) over the fixes; the machine's noise is in them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def sheet(rows: int) -> str:
    lines = ["Task,Due date,Contact ID,Priority,Notes"]
    for n in range(rows):
        number = n + 2
        contact = "9999" if number % 1000 == 7 else str(12 + n % 3)
        priority = ("high", "low", "medium")[n % 3]
        lines.append(f"Task {number},2026-12-{1 + n % 28:02d} 10:00,{contact},{priority},n {n}")
    return "\n".join(lines) + "\n"


def start(folder: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "importer.cli", "serve", "--sandbox", "--port", "0",
         "--max-upload-mb", "500"],
        stderr=subprocess.PIPE, text=True, cwd=folder,
        env={**os.environ, "XDG_DATA_HOME": str(folder)},
    )  # fmt: skip
    assert process.stderr is not None
    while "The import page: " not in (line := process.stderr.readline()):
        if not line:
            raise SystemExit("the page did not start")
    return process, line.split("The import page: ", 1)[1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--fixes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, address = start(Path(folder))
        try:
            figures = measure(address, args.rows, args.fixes)
        finally:
            process.terminate()
            process.wait(timeout=30)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.rows:,} rows; a full check: {figures['full_s']:.2f} s")
    for what in ("fix", "page"):
        ms = figures[what]
        print(f"{what:>5}: median {ms['median_ms']:.0f} ms, slowest {ms['max_ms']:.0f} ms "
              f"(over {ms['n']})")  # fmt: skip


def measure(address: str, rows: int, fixes: int) -> dict:
    with httpx.Client(follow_redirects=False, timeout=600) as client:
        page = client.get(address)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        upload = {"file": ("big.csv", sheet(rows).encode(), "text/csv")}
        sent = client.post(f"{address}upload", data={"csrf": token}, files=upload)
        base = address.rstrip("/") + sent.headers["location"].removesuffix("/map")
        client.post(f"{base}/map", data={
            "csrf": token, "profile": "", "column:Task": "name", "column:Due date": "endDatetime",
            "column:Contact ID": "contactId", "column:Priority": "priority",
            "column:Notes": "description", "next": "map"})  # fmt: skip
        began = time.perf_counter()
        client.post(f"{base}/check", data={"csrf": token})
        full = time.perf_counter() - began
        faulty = [n for n in range(2, rows + 2) if n % 1000 == 7][:fixes]
        fix_ms, page_ms = [], []
        for number in faulty:
            began = time.perf_counter()
            answer = client.post(f"{base}/fix", data={"csrf": token, "row": str(number),
                                                      "column": "Contact ID", "value": "12",
                                                      "errors": "1"})  # fmt: skip
            fix_ms.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 303, answer.text[:500]
            began = time.perf_counter()
            shown = client.get(address.rstrip("/") + answer.headers["location"].split("#")[0])
            page_ms.append((time.perf_counter() - began) * 1000)
            assert shown.status_code == 200 and f'id="row-{number}"' not in shown.text
        left = re.search(r'class="count invalid">(\d+) invalid', shown.text)
        assert (int(left.group(1)) if left else 0) == rows // 1000 - len(faulty), "a fix lost"
    return {
        "rows": rows, "full_s": full,
        **{what: {"median_ms": statistics.median(ms), "max_ms": max(ms), "n": len(ms)}
           for what, ms in (("fix", fix_ms), ("page", page_ms))},
    }  # fmt: skip


if __name__ == "__main__":
    main()
