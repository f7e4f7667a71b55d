"""What the journal and the results writer cost.

1. ``journal alone``: rows through the journal as a run writes them (in flight before the send,
   done after, in groups), on a file in a temporary folder: rows/s of the journal by itself.
2. ``import``: the same rows imported into a sandbox (no limit, no latency, so the journal's
   share is as large as it can be), with the journal against the same run with its writes
   dropped, alternating, best of each: the journal's cost in rows/s end to end.
3. ``results``: 1,000,000 rows written as XLSX and as CSV, each in a fresh process: seconds
   and peak memory (the process's maximum RSS, and what it held before writing).

    python -m benchmarks.journal [--rows 5000] [--results-rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sandbox import KEY, SECRET
from benchmarks.throughput import Sandbox, write_rows
from importer.client import Credentials, IvvyClient
from importer.journal import Journal, RunJournal
from importer.model import Outcome
from importer.options import RunOptions
from importer.pipeline import run_import


def journal_alone(folder: Path, rows: int) -> float:
    """Rows/s through the journal alone, written as a run writes them (each row done with
    what it sent, so its lineage, the task it became, is written too)."""
    return rows / written_as_a_run(folder / "alone.sqlite", rows)


def written_as_a_run(where: Path | str, rows: int) -> float:
    """Seconds to write ``rows`` through the journal at ``where`` (a file, or a PostgreSQL
    database's URL) as a run writes them: each group of 64 in flight, then done."""
    with Journal(where, target="t") as journal:
        record = journal.start(kind="import", target="t", source="s", print_="p", options={})
        run = RunJournal(journal, record)
        params = {"name": "Task", "endDatetime": "2026-12-01 09:00:00", "priority": "high"}
        began = time.perf_counter()
        for start in range(0, rows, 64):
            numbers = range(start + 2, min(start + 64, rows) + 2)
            now = time.time()
            for number in numbers:
                run.in_flight(number, params, now)
            run.flush()
            for number in numbers:
                run.done(number, Outcome("created", task_id=number), sent_at=now, params=params)
        run.flush()
        return time.perf_counter() - began


async def one_import(base: str, source: Path, folder: Path, tag: str) -> float:
    credentials = Credentials(KEY, SECRET, base)
    options = RunOptions(
        results=folder / f"{tag}.csv", state=folder / f"{tag}.sqlite", concurrency=8
    )
    began = time.perf_counter()
    async with IvvyClient(credentials, max_connections=8) as client:
        summary = await run_import(source, client, options)
    seconds = time.perf_counter() - began
    if tag.startswith("with journal"):  # with its writes dropped, the journal knows nothing
        assert summary.counts.get("created") == summary.row_count, summary.counts
    return summary.row_count / seconds


def without_writes() -> object:
    """Drop every journal write (the A/B comparison's B side); returns the real flush."""
    real = RunJournal.flush

    def dropped(self: RunJournal) -> None:
        self._pending.clear()

    RunJournal.flush = dropped  # type: ignore[method-assign]
    return real


def imports(folder: Path, rows: int, repeat: int) -> dict[str, float]:
    source = write_rows(folder, rows)
    best = {"with journal": 0.0, "journal writes dropped": 0.0}
    for turn in range(repeat):
        for side in best:
            with Sandbox() as sandbox:
                real = without_writes() if side != "with journal" else None
                try:
                    rate = asyncio.run(one_import(sandbox.base, source, folder, f"{side}{turn}"))
                finally:
                    if real is not None:
                        RunJournal.flush = real  # type: ignore[method-assign]
                assert sandbox.tasks() == rows  # either way, every row went
            best[side] = max(best[side], rate)
    return best


_WRITER = """
import resource, sys, time
from pathlib import Path
from importer.model import Outcome, Row
from importer.results import open_results
path, count = Path(sys.argv[1]), int(sys.argv[2])
headers = ["Task Name", "Due Date", "Contact ID", "Description"]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
began = time.perf_counter()
with open_results(path, headers) as sheet:
    for n in range(count):
        cells = {"Task Name": f"Task {n}", "Due Date": "2026-12-01 09:00", "Contact ID": str(n),
                 "Description": f"Imported from the legacy CRM, record {n}"}
        sheet.add(Row(n + 2, cells), Outcome("created", task_id=100000 + n))
    sheet.close([("rows", count)], {})
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, before, peak, path.stat().st_size)
"""


def results_writer(folder: Path, rows: int) -> dict[str, dict[str, float]]:
    figures = {}
    for suffix in (".xlsx", ".csv"):
        path = folder / f"million{suffix}"
        done = subprocess.run(
            [sys.executable, "-c", _WRITER, str(path), str(rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, before, peak, size = map(float, done.stdout.split())
        figures[suffix] = {
            "seconds": round(seconds, 1),
            "rows_per_second": round(rows / seconds),
            "rss_before_mb": round(before / 1024, 1),
            "peak_rss_mb": round(peak / 1024, 1),
            "file_mb": round(size / 1e6, 1),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--results-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        figures = {
            "journal_alone_rows_per_second": round(journal_alone(folder, 200_000)),
            "import_rows_per_second": {
                k: round(v) for k, v in imports(folder, args.rows, args.repeat).items()
            },
            "results_writer": results_writer(folder, args.results_rows),
        }
    imports_ = figures["import_rows_per_second"]
    cost = 1 - imports_["with journal"] / imports_["journal writes dropped"]
    figures["journal_cost_share"] = round(cost, 3)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"journal alone: {figures['journal_alone_rows_per_second']:,} rows/s")
    print(
        f"import of {args.rows:,} rows, no limit (best of {args.repeat}): "
        f"{imports_['with journal']:,} rows/s with the journal, "
        f"{imports_['journal writes dropped']:,} with its writes dropped: cost {cost:.1%}"
    )
    for suffix, line in figures["results_writer"].items():
        print(
            f"results {suffix}, {args.results_rows:,} rows: {line['seconds']} s "
            f"({line['rows_per_second']:,} rows/s), peak RSS {line['peak_rss_mb']} MB "
            f"(before writing {line['rss_before_mb']} MB), file {line['file_mb']} MB"
        )


if __name__ == "__main__":
    main()
