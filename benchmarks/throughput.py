"""Import speed against the sandbox, each figure beside what it is compared with, in one run.

Each scenario starts its own sandbox process on a free loopback port and stops it after:

1. ``limits``: 3,000 rows through the importer, told nothing, against each kind of limit at
   100 requests/s with 50 ms per answer: a sliding 1 s window, a token bucket (burst 200) and a
   quota (1,000 per 10 s), each with ``Retry-After`` in seconds and with none. Rows/s end to end
   (reading, checks, start-up and results included) against the limit, and the share of
   requests answered 429.
2. ``latency``: no limit, 50 ms and 250 ms per answer: the ``task-import run`` process against
   ``benchmarks/competent.py`` (asyncio + httpx, 32 in flight, retries 429s) on the same rows,
   whole process against whole process.
3. ``open``: no limit, no latency: the importer's send stage against a bare httpx loop.
4. ``batch`` (``--batch``): 20,000 rows through ``--via batch`` at the window limit.

    python -m benchmarks.throughput [--rows 3000] [--only limits,latency,open,batch]
        [--limits window,bucket_none,...] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.sandbox import KEY, SECRET, free_port, start
from importer.client import Credentials, IvvyClient, encode_body, signed_headers
from importer.options import RunOptions
from importer.pipeline import run_import

URI = "/api/1.0/crm?action=addOrUpdateTask"
#: Batch mode goes 200 rows a request: it needs more rows than row mode for a steady figure.
BATCH_ROWS = 20_000


def write_rows(folder: Path, count: int) -> Path:
    path = folder / "tasks.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "endDatetime", "priority", "status"])
        for n in range(count):
            writer.writerow([f"Task {n}", "2026-12-01 09:00", "high", "In Progress"])
    return path


def payloads(count: int) -> list[dict]:
    return [
        {"name": f"Task {n}", "endDatetime": "2026-12-01 09:00:00", "priority": "high",
         "status": 1}
        for n in range(count)
    ]  # fmt: skip


class Sandbox:
    """A sandbox process with the given knobs, for one scenario."""

    def __init__(self, *knobs: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = start(
            ["python", "-m", "importer.cli", "sandbox", "--port", str(self.port), "--key", KEY,
             "--secret", SECRET, *knobs],
            self.port,
        )  # fmt: skip

    def stats(self) -> dict:
        return httpx.get(f"{self.base}/_sandbox/stats", timeout=10).json()

    def tasks(self) -> int:
        return len(httpx.get(f"{self.base}/_sandbox/tasks", timeout=30).json())

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def importer_run(
    base: str, source: Path, folder: Path, via: str = "rows"
) -> tuple[float, float]:
    """Seconds end to end (start-up included), and seconds of the send stage alone."""
    credentials = Credentials(KEY, SECRET, base)
    began = time.perf_counter()
    async with IvvyClient(credentials, max_connections=32) as client:
        options = RunOptions(
            results=folder / "out.csv", via=via, state=folder / "journal.sqlite", new_run=True
        )
        summary = await run_import(source, client, options)
    seconds = time.perf_counter() - began
    assert summary.counts.get("created") == summary.row_count, summary.counts
    return seconds, summary.send_seconds


async def bare_loop(base: str, count: int, in_flight: int = 8) -> float:
    credentials = Credentials(KEY, SECRET, base)
    todo = iter(payloads(count))
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def worker() -> None:
            for params in todo:
                body = encode_body(params)
                headers = signed_headers(credentials, URI, body, datetime.now(UTC))
                (await client.post(URI, content=body, headers=headers)).raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - began


LIMITS = {
    "window": ("--limit-kind", "window"),
    "bucket": ("--limit-kind", "bucket", "--burst", "200"),
    "quota": ("--limit-kind", "quota", "--quota-period-s", "10"),
}
LIMIT = 100


def timed_process(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``argv`` to its exit (it must succeed)."""
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - began
    assert done.returncode == 0, done.stderr[-2000:]
    return seconds


def limits(
    rows: int, source: Path, folder: Path, figures: dict[str, float], cases: set[str]
) -> None:
    for kind, knobs in LIMITS.items():
        for retry_after in ("seconds", "none"):
            if cases and f"{kind}_{retry_after}" not in cases and kind not in cases:
                continue
            args = ("--rate-limit", str(LIMIT), "--latency-ms", "50", *knobs,
                    "--retry-after", retry_after)  # fmt: skip
            with Sandbox(*args) as sandbox:
                seconds, _ = asyncio.run(importer_run(sandbox.base, source, folder))
                stats = sandbox.stats()
                assert sandbox.tasks() == rows
            name = f"{kind}_{retry_after}"
            figures[f"{name}_rows_per_s"] = rows / seconds
            figures[f"{name}_share_of_limit"] = rows / seconds / LIMIT
            figures[f"{name}_429_share"] = stats["rate_limited"] / stats["requests"]


def latency(rows: int, source: Path, folder: Path, figures: dict[str, float]) -> None:
    for ms in (50, 250):
        with Sandbox("--latency-ms", str(ms)) as sandbox:
            env = {**os.environ, "IVVY_BASE_URL": sandbox.base, "IVVY_API_KEY": KEY,
                   "IVVY_API_SECRET": SECRET}  # fmt: skip
            ours = timed_process(
                [sys.executable, "-m", "importer.cli", "run", str(source), "--new-run",
                 "--quiet", "--state", str(folder / f"j{ms}.sqlite"),
                 "--results", str(folder / f"r{ms}.csv")],
                env,
            )  # fmt: skip
            theirs = timed_process(
                [sys.executable, "-m", "benchmarks.competent", str(source),
                 str(folder / f"c{ms}.csv")],
                env,
            )  # fmt: skip
            assert sandbox.tasks() == 2 * rows
        figures[f"latency{ms}_importer_rows_per_s"] = rows / ours
        figures[f"latency{ms}_competent_rows_per_s"] = rows / theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--only", default="limits,latency,open")
    parser.add_argument(
        "--limits", default="", help="only these limit cases, e.g. quota or quota_none"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = min(args.rows, 20_000)
    wanted = set(args.only.split(","))
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = write_rows(folder, rows)
        if "limits" in wanted:
            cases = set(filter(None, args.limits.split(",")))
            limits(rows, source, folder, figures, cases)
        if "latency" in wanted:
            latency(rows, source, folder, figures)
        if "open" in wanted:
            with Sandbox() as sandbox:
                whole, sending = asyncio.run(importer_run(sandbox.base, source, folder))
                figures["open_importer_rows_per_s"] = rows / whole
                figures["open_importer_send_rows_per_s"] = rows / sending
            with Sandbox() as sandbox:
                figures["open_bare_loop_rows_per_s"] = rows / asyncio.run(
                    bare_loop(sandbox.base, rows)
                )
        if "batch" in wanted:
            many = write_rows(folder, BATCH_ROWS)
            with Sandbox("--rate-limit", str(LIMIT), "--latency-ms", "50") as sandbox:
                seconds, _ = asyncio.run(importer_run(sandbox.base, many, folder, via="batch"))
                assert sandbox.tasks() == BATCH_ROWS
                figures["batch_rows_per_s"] = BATCH_ROWS / seconds
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
        return
    f = figures
    print(f"{rows} rows")
    for kind in LIMITS:
        for retry_after in ("seconds", "none"):
            name = f"{kind}_{retry_after}"
            if f"{name}_rows_per_s" in f:
                print(
                    f"{kind:6} limit {LIMIT} req/s, Retry-After {retry_after:7}: importer "
                    f"{f[name + '_rows_per_s']:.1f} rows/s = {f[name + '_share_of_limit']:.1%} "
                    f"of the limit (target >= 90%), {f[name + '_429_share']:.2%} answered 429 "
                    "(target <= 3%)"
                )
    for ms in (50, 250):
        if f"latency{ms}_importer_rows_per_s" in f:
            ours, theirs = (
                f[f"latency{ms}_importer_rows_per_s"],
                f[f"latency{ms}_competent_rows_per_s"],
            )
            print(
                f"no limit, {ms} ms per answer, whole process: importer {ours:.0f} rows/s, "
                f"competent script {theirs:.0f} rows/s = {ours / theirs:.2f}x (target >= 0.9x)"
            )
    if "open_importer_rows_per_s" in f:
        print(
            f"no limit, no latency: importer sends {f['open_importer_send_rows_per_s']:.0f} "
            f"rows/s ({f['open_importer_rows_per_s']:.0f} end to end), bare httpx loop "
            f"{f['open_bare_loop_rows_per_s']:.0f} requests/s; ratio "
            f"{f['open_importer_send_rows_per_s'] / f['open_bare_loop_rows_per_s']:.2f}x"
        )
    if "batch_rows_per_s" in f:
        print(f"batch mode, window limit: {f['batch_rows_per_s']:.0f} rows/s end to end "
              f"({BATCH_ROWS:,} rows)")  # fmt: skip


if __name__ == "__main__":
    main()
