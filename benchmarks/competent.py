"""The fastest honest peer: what a careful person writes by hand to load a CSV of tasks into
iVvy, as one self-contained script (it shares no code with the importer).

asyncio + httpx, 32 requests in flight on one pooled client, each request signed as the
reference says, 429s retried after their ``Retry-After`` (else after a second), every other error
left as it is. It writes one line per row (the task id, or the error). No journal, no look-up of
lost answers, no checks: the importer does more, and is measured against this.

    IVVY_BASE_URL=... IVVY_API_KEY=... IVVY_API_SECRET=... \\
        python -m benchmarks.competent SOURCE.csv OUT.csv
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import json
import os
import sys
from datetime import UTC, datetime

import httpx

URI = "/api/1.0/crm?action=addOrUpdateTask"
IN_FLIGHT = 32
STATUS = {"not started": 0, "in progress": 1, "on hold": 2, "cancelled": 3, "completed": 4}


def headers(key: str, secret: str, body: bytes) -> dict[str, str]:
    md5 = hashlib.md5(body).hexdigest()
    content_type = "application/json; charset=utf-8"
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    to_sign = f"POST{md5}{content_type}{URI}1.0IVVYDate={date}".lower()
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).hexdigest()
    return {
        "Content-Type": content_type,
        "Content-MD5": md5,
        "IVVY-Date": date,
        "X-Api-Version": "1.0",
        "X-Api-Authorization": f"IWS {key}:{signature}",
    }


def params_of(row: dict[str, str]) -> dict[str, object]:
    due = row["endDatetime"].strip()
    params: dict[str, object] = {
        "name": row["name"].strip(),
        "endDatetime": due if len(due) == 19 else f"{due}:00",
    }
    if row.get("priority"):
        params["priority"] = row["priority"].strip().lower()
    if row.get("status"):
        params["status"] = STATUS[row["status"].strip().lower()]
    return params


async def main(source: str, out: str) -> int:
    base, key, secret = (
        os.environ[k] for k in ("IVVY_BASE_URL", "IVVY_API_KEY", "IVVY_API_SECRET")
    )
    with open(source, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    results: list[str] = [""] * len(rows)
    todo = iter(enumerate(rows))
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def worker() -> None:
            for index, row in todo:
                body = json.dumps(params_of(row), separators=(",", ":")).encode()
                while True:
                    answer = await client.post(
                        URI, content=body, headers=headers(key, secret, body)
                    )
                    if answer.status_code != 429:
                        break
                    await asyncio.sleep(float(answer.headers.get("Retry-After") or 1))
                data = answer.json()
                results[index] = str(data.get("id") if answer.is_success else data)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    with open(out, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([r] for r in results)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
