"""The journal on SQLite and on PostgreSQL, side by side.

1. ``journal alone``: rows through each journal as a run writes them (in flight before the send,
   done after, in groups): journal writes per second by itself.
2. ``import``: a 20,000-row import into a sandbox with no limit and no latency (so the journal's
   share is as large as it can be), with the journal in a SQLite file and in a PostgreSQL
   database on loopback, alternating, best of each: rows/s end to end, and the journal's writes
   per second during the run (statements written, each row's in-flight and done states and its
   lineage, over the run's seconds).

The PostgreSQL server is the tests' (``.ci/postgres`` starts one on 127.0.0.1:55432;
``IVVY_TEST_POSTGRES`` names another). Each run has a schema of its own, dropped after.

    python -m benchmarks.journal_backends [--rows 20000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from benchmarks.journal import written_as_a_run
from benchmarks.sandbox import KEY, SECRET
from benchmarks.throughput import Sandbox, write_rows
from importer.client import Credentials, IvvyClient
from importer.journal import RunJournal
from importer.options import RunOptions
from importer.pipeline import run_import

SERVER = os.environ.get("IVVY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:55432/postgres")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A journal URL on a schema of its own, dropped after."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def location(kind: str, folder: Path, tag: str) -> Iterator[Path | str]:
    if kind == "sqlite":
        yield folder / f"{tag}.sqlite"
    else:
        with postgres_schema() as url:
            yield url


class Counted:
    """Counts the statements the journal writes (RunJournal.flush's pending)."""

    def __init__(self) -> None:
        self.writes = 0
        self._real = RunJournal.flush

    def __enter__(self) -> Counted:
        real, counter = self._real, self

        def counting(run: RunJournal) -> None:
            counter.writes += len(run._pending)
            real(run)

        RunJournal.flush = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        RunJournal.flush = self._real  # type: ignore[method-assign]


def journal_alone(where: Path | str, rows: int) -> float:
    """Journal writes per second, rows written as a run writes them."""
    with Counted() as counted:
        seconds = written_as_a_run(where, rows)
    return counted.writes / seconds


async def one_import(base: str, source: Path, results: Path, state: Path | str) -> float:
    options = RunOptions(results=results, state=state, concurrency=8)
    async with IvvyClient(Credentials(KEY, SECRET, base), max_connections=8) as client:
        summary = await run_import(source, client, options)
    assert summary.counts.get("created") == summary.row_count, summary.counts
    return float(summary.row_count)


def imports(folder: Path, rows: int, repeat: int) -> dict[str, dict[str, float]]:
    source = write_rows(folder, rows)
    best: dict[str, dict[str, float]] = {
        kind: {"rows_per_second": 0.0, "journal_writes_per_second": 0.0}
        for kind in ("sqlite", "postgresql")
    }
    for turn in range(repeat):
        for kind, figures in best.items():
            with Sandbox() as sandbox, location(kind, folder, f"run{turn}") as where:
                with Counted() as counted:
                    began = time.perf_counter()
                    count = asyncio.run(
                        one_import(sandbox.base, source, folder / f"{kind}{turn}.csv", where)
                    )
                    seconds = time.perf_counter() - began
                assert sandbox.tasks() == rows
            if count / seconds > figures["rows_per_second"]:
                figures["rows_per_second"] = count / seconds
                figures["journal_writes_per_second"] = counted.writes / seconds
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--alone-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        alone = {}
        for kind in ("sqlite", "postgresql"):
            with location(kind, folder, "alone") as where:
                alone[kind] = round(journal_alone(where, args.alone_rows))
        runs = imports(folder, args.rows, args.repeat)
    ratio = runs["postgresql"]["rows_per_second"] / runs["sqlite"]["rows_per_second"]
    figures = {
        "journal_alone_writes_per_second": alone,
        "import": {k: {n: round(v) for n, v in f.items()} for k, f in runs.items()},
        "postgresql_over_sqlite": round(ratio, 3),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"journal alone ({args.alone_rows:,} rows): {alone['sqlite']:,} writes/s on SQLite, "
        f"{alone['postgresql']:,} on PostgreSQL"
    )
    for kind, line in figures["import"].items():
        print(
            f"import of {args.rows:,} rows, no limit, best of {args.repeat}, {kind}: "
            f"{line['rows_per_second']:,} rows/s, {line['journal_writes_per_second']:,} "
            "journal writes/s"
        )
    print(f"PostgreSQL / SQLite import rate: {ratio:.3f} (within 10%: {ratio >= 0.9})")


if __name__ == "__main__":
    main()
