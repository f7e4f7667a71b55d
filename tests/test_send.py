"""The first send stage over the sandbox: 429s are waited out, nothing is ever sent twice."""

from __future__ import annotations

import asyncio

from importer.client import IvvyClient
from importer.model import Payload, Row
from importer.sandbox import default_seed
from importer.send import SendOptions, send_all

DUE = "2026-12-01 09:00:00"


def payloads(n, **extra):
    return [
        Payload(row=Row(i + 2, {}), params={"name": f"T{i}", "endDatetime": DUE, **extra})
        for i in range(n)
    ]


def deliver(server, items, concurrency=4):
    outcomes = {}

    async def go():
        async with IvvyClient(server.credentials) as client:
            await send_all(
                client,
                items,
                lambda p, o: outcomes.__setitem__(p.row.number, o),
                SendOptions(concurrency=concurrency),
            )

    asyncio.run(go())
    return outcomes


def test_rate_limited_rows_are_all_created_once(make_sandbox):
    server = make_sandbox(rate_limit=10)
    outcomes = deliver(server, payloads(25), concurrency=8)
    assert {o.result for o in outcomes.values()} == {"created"}
    assert server.stats()["rate_limited"] > 0
    tasks = server.tasks()
    assert sorted(t["id"] for t in tasks) == sorted(o.task_id for o in outcomes.values())
    assert len({t["name"] for t in tasks}) == 25


def test_a_create_without_answer_is_failed_not_resent(make_sandbox):
    server = make_sandbox(drop_rate=1.0)
    outcomes = deliver(server, payloads(3))
    assert {(o.result, o.error_code) for o in outcomes.values()} == {("failed", "NO_ANSWER")}
    assert len(server.tasks()) == 3  # written once each, never twice
    assert server.stats()["by_action"]["crm.addOrUpdateTask"] == 3


def test_a_create_answered_500_is_failed_not_resent(make_sandbox):
    server = make_sandbox(fail_rate=1.0)
    outcomes = deliver(server, payloads(2))
    assert {(o.result, o.error_code) for o in outcomes.values()} == {("failed", 500)}
    assert server.stats()["by_action"]["crm.addOrUpdateTask"] == 2


def test_updates_are_retried_through_server_errors(make_sandbox):
    seed = {**default_seed(), "tasks": [{"id": 1, "name": "Old", "endDatetime": DUE}]}
    server = make_sandbox(fail_rate=0.5, random_seed=3, seed=seed)
    outcomes = deliver(server, [Payload(Row(2, {}), {"id": 1, "name": "New"})])
    assert outcomes[2].result == "updated" and outcomes[2].task_id == 1
    assert server.tasks()[0]["name"] == "New"


def test_api_refusals_are_final_and_name_the_column(sandbox):
    item = Payload(
        Row(5, {}),
        {"name": "x", "endDatetime": DUE, "contactId": 9999},
        columns={"contactId": "Contact ID"},
    )
    outcomes = deliver(sandbox, [item])
    assert (outcomes[5].result, outcomes[5].error_code, outcomes[5].field) == (
        "failed",
        24390,
        "Contact ID",
    )
    assert sandbox.stats()["by_action"]["crm.addOrUpdateTask"] == 1
