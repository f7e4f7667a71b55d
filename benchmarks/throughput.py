"""Import speed against the sandbox, each figure beside what it is compared with, in one run.

Each scenario starts its own sandbox process on a free loopback port and stops it after:

1. ``limited``: the sandbox allows 100 requests/s and answers after 50 ms; 1,500 rows go through
   the importer, told nothing about the limit. Rows/s end to end (reading the file, the checks,
   start-up and the results included) against the limit, and the share of requests answered 429.
2. ``naive``: the same rows, the same sandbox, sent one after another by a plain signed loop.
3. ``open``: no limit, no latency: the importer against a bare httpx loop sending the same
   payloads with 8 in flight.
4. ``batch``: the limited sandbox again, 20,000 rows through ``--via batch``, against row mode.

    python -m benchmarks.throughput [--rows 1500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.sandbox import KEY, SECRET, free_port, start
from importer.client import Credentials, IvvyClient, encode_body, signed_headers
from importer.pipeline import RunOptions, run_import

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
    assert summary.counts.get("created") == summary.rows, summary.counts
    return seconds, summary.send_seconds


async def naive_loop(base: str, count: int) -> float:
    """One request after another, each signed: what a hand-written script does."""
    credentials = Credentials(KEY, SECRET, base)
    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for params in payloads(count):
            body = encode_body(params)
            while True:
                headers = signed_headers(credentials, URI, body, datetime.now(UTC))
                answer = await client.post(URI, content=body, headers=headers)
                if answer.status_code != 429:
                    break
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
    return time.perf_counter() - began


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = min(args.rows, 20_000)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = write_rows(folder, rows)
        with Sandbox("--rate-limit", "100", "--latency-ms", "50") as sandbox:
            seconds, _ = asyncio.run(importer_run(sandbox.base, source, folder))
            stats = sandbox.stats()
            assert sandbox.tasks() == rows
            figures["limited_rows_per_s"] = rows / seconds
            figures["limited_share_of_limit"] = rows / seconds / 100
            figures["limited_429_share"] = stats["rate_limited"] / stats["requests"]
        with Sandbox("--rate-limit", "100", "--latency-ms", "50") as sandbox:
            figures["naive_rows_per_s"] = rows / asyncio.run(naive_loop(sandbox.base, rows))
        with Sandbox() as sandbox:
            whole, sending = asyncio.run(importer_run(sandbox.base, source, folder))
            figures["open_importer_rows_per_s"] = rows / whole
            figures["open_importer_send_rows_per_s"] = rows / sending
        with Sandbox() as sandbox:
            figures["open_bare_loop_rows_per_s"] = rows / asyncio.run(bare_loop(sandbox.base, rows))
        many = write_rows(folder, BATCH_ROWS)
        with Sandbox("--rate-limit", "100", "--latency-ms", "50") as sandbox:
            seconds, _ = asyncio.run(importer_run(sandbox.base, many, folder, via="batch"))
            assert sandbox.tasks() == BATCH_ROWS
            figures["batch_rows_per_s"] = BATCH_ROWS / seconds
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
        return
    f = figures
    print(f"{rows} rows")
    print(
        f"limited (100 req/s, 50 ms): importer {f['limited_rows_per_s']:.1f} rows/s = "
        f"{f['limited_share_of_limit']:.1%} of the limit (target >= 95%), "
        f"{f['limited_429_share']:.2%} of requests answered 429 (target <= 2%)"
    )
    print(
        f"same sandbox, naive sequential loop: {f['naive_rows_per_s']:.1f} rows/s; importer / "
        f"naive = {f['limited_rows_per_s'] / f['naive_rows_per_s']:.1f}x (target >= 5x)"
    )
    print(
        f"no limit, no latency: importer sends {f['open_importer_send_rows_per_s']:.0f} "
        f"rows/s ({f['open_importer_rows_per_s']:.0f} end to end), bare httpx loop "
        f"{f['open_bare_loop_rows_per_s']:.0f} requests/s; ratio "
        f"{f['open_importer_send_rows_per_s'] / f['open_bare_loop_rows_per_s']:.2f}x "
        "(target >= 0.8x)"
    )
    print(f"batch mode, same limit: {f['batch_rows_per_s']:.0f} rows/s end to end "
          f"({BATCH_ROWS:,} rows); batch / row mode = "
          f"{f['batch_rows_per_s'] / f['limited_rows_per_s']:.0f}x (target >= 50x)")  # fmt: skip


if __name__ == "__main__":
    main()
