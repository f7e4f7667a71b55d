"""How fast the sandbox answers: a bare httpx loop of signed addOrUpdateTask creates.

Runs the sandbox (and, for comparison, a bare starlette app answering small JSON) in its own
process on a free loopback port, then posts N requests with 1, 8 and 32 in flight. Bounded in
count and time; both servers stop by themselves at the end.

    python -m benchmarks.sandbox [--requests 3000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx

from importer.client import Credentials, encode_body, signed_headers

URI = "/api/1.0/crm?action=addOrUpdateTask"
KEY, SECRET = "bench-key", "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}")


async def loop(base_url: str, total: int, in_flight: int, time_limit: float) -> dict[str, float]:
    creds = Credentials(KEY, SECRET, base_url)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    counter = iter(range(total))
    errors = 0
    deadline = time.monotonic() + time_limit
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def worker() -> int:
            nonlocal errors
            done = 0
            for n in counter:
                if time.monotonic() > deadline:
                    break
                body = encode_body({"name": f"Bench {n}", "endDatetime": "2026-12-01 09:00:00"})
                headers = signed_headers(creds, URI, body, datetime.now(UTC))
                response = await client.post(URI, content=body, headers=headers)
                errors += response.status_code != 200
                done += 1
            return done

        # Warm the connections first.
        await asyncio.gather(*(client.post(URI, content=b"{}") for _ in range(in_flight)))
        began = time.perf_counter()
        done = sum(await asyncio.gather(*(worker() for _ in range(in_flight))))
        seconds = time.perf_counter() - began
    return {
        "requests": done,
        "seconds": round(seconds, 3),
        "rps": round(done / seconds, 1),
        "errors": errors,
    }


def measure(
    name: str,
    command: list[str],
    port: int,
    args: argparse.Namespace,
    in_flights: tuple[int, ...] = (1, 8, 32),
) -> list[dict]:
    process = start(command, port)
    try:
        rows = []
        for in_flight in in_flights:
            result = asyncio.run(loop(f"http://127.0.0.1:{port}", args.requests, in_flight, 60))
            rows.append({"server": name, "in_flight": in_flight, **result})
            if not args.json:
                print(
                    f"{name:>12}  {in_flight:>3} in flight  {result['requests']:>6} requests "
                    f"in {result['seconds']:>6.2f} s  = {result['rps']:>7.1f} req/s  "
                    f"({result['errors']} errors)",
                    flush=True,
                )
        return rows
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per measurement (max 20000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.requests = min(args.requests, 20000)
    if not args.json:
        print(
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} cores, httpx {httpx.__version__}; client and server on one machine"
        )
    sandbox = [sys.executable, "-m", "importer.cli", "sandbox", "--key", KEY, "--secret", SECRET]
    bare = [sys.executable, "-m", "uvicorn", "benchmarks._echo_app:app", "--log-level", "warning",
            "--no-access-log"]  # fmt: skip
    runs = [
        ("sandbox", sandbox, (1, 8, 32)),
        # Latency is an async sleep: 16 in flight at 50 ms must give about 16 / 0.05 = 320 req/s.
        ("sandbox 50ms", [*sandbox, "--latency-ms", "50"], (16,)),
        ("bare app", bare, (1, 8, 32)),
    ]
    rows = []
    for name, command, in_flights in runs:
        port = free_port()
        rows += measure(name, [*command, "--port", str(port)], port, args, in_flights)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
