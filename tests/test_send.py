"""The first send stage over the sandbox: 429s are waited out, nothing is ever sent twice."""

from __future__ import annotations

import asyncio
import contextlib

from importer.client import IvvyClient
from importer.model import Payload, Row
from importer.sandbox import default_seed
from importer.send import SendOptions, send_all

DUE = "2026-12-01 09:00:00"
#: The sandbox here writes nothing late and its lists do not lag: a short settle will do.
SETTLE = 0.5


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
                SendOptions(concurrency=concurrency, settle=SETTLE),
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


def test_a_create_whose_answer_was_lost_is_found_not_resent(make_sandbox):
    server = make_sandbox(drop_rate=1.0)
    outcomes = deliver(server, payloads(3))
    stored = {t["name"]: t["id"] for t in server.tasks()}
    assert len(stored) == 3  # written once each, never twice
    assert server.stats()["by_action"]["crm.addOrUpdateTask"] == 3
    for number, outcome in outcomes.items():
        assert outcome.result == "created"
        assert outcome.task_id == stored[f"T{number - 2}"]
        assert "answer was lost" in outcome.warnings[0]


def test_a_create_answered_500_is_looked_up_then_sent_again(make_sandbox):
    server = make_sandbox(fail_rate=0.3, random_seed=5)  # 8 failures in a row: 1 in 15,000
    outcomes = deliver(server, payloads(20))
    assert {o.result for o in outcomes.values()} == {"created"}
    tasks = server.tasks()
    assert sorted(t["name"] for t in tasks) == sorted(f"T{n}" for n in range(20))
    assert sorted(t["id"] for t in tasks) == sorted(o.task_id for o in outcomes.values())


def test_alike_rows_are_each_created_once_when_answers_are_lost(make_sandbox):
    server = make_sandbox(drop_rate=1.0)
    same = [Payload(Row(n, {}), {"name": "Same", "endDatetime": DUE}) for n in range(2, 6)]
    outcomes = deliver(server, same, concurrency=4)
    ids = [o.task_id for o in outcomes.values()]
    assert len(server.tasks()) == 4 and len(set(ids)) == 4  # four rows, four tasks, none shared


def test_a_lost_create_with_a_contact_and_a_company_is_found_not_sent_twice(make_sandbox):
    # iVvy files such a task under the company, the contact beside it (companyContactId): the
    # look-up must still know it for the row's.
    server = make_sandbox(drop_rate=1.0)
    params = {"name": "Both", "endDatetime": DUE, "contactId": 12, "companyId": 3}
    outcomes = deliver(server, [Payload(Row(2, {}), params)])
    tasks = server.tasks()
    assert len(tasks) == 1 and tasks[0]["companyContactId"] == 12 and tasks[0]["contactId"] is None
    assert outcomes[2].result == "created" and outcomes[2].task_id == tasks[0]["id"]


def test_updates_are_retried_through_server_errors(make_sandbox):
    seed = {**default_seed(), "tasks": [{"id": 1, "name": "Old", "endDatetime": DUE}]}
    server = make_sandbox(fail_rate=0.3, random_seed=3, seed=seed)
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


def _exactly_once(make_sandbox, tmp_path, count, **knobs):
    import csv as csv_module

    from click.testing import CliRunner

    from importer.cli import main

    from .test_cli_run import env_for, read_results

    server = make_sandbox(fail_rate=0.05, drop_rate=0.05, random_seed=2026, **knobs)
    source = tmp_path / "many.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["name", "endDatetime", "contactId"])
        writer.writerows([f"Task {n}", DUE, (n % 200) + 1] for n in range(count))
    outcome = CliRunner().invoke(
        main, ["run", str(source), "--json", "--settle-s", "1"], env=env_for(server)
    )
    assert outcome.exit_code == 0, outcome.output
    rows = read_results(tmp_path / "many.results.csv")
    tasks = server.tasks()
    assert len(tasks) == count  # each row once: no duplicates, none lost
    by_name = {t["name"]: t["id"] for t in tasks}
    assert len(by_name) == count
    assert all(int(r["task_id"]) == by_name[r["name"]] for r in rows)
    stats = server.stats()
    assert stats["drops"] > 0 and stats["failures_injected"] > 0  # the faults did happen


def test_a_thousand_rows_through_failures_and_lost_answers_make_a_thousand_tasks(
    make_sandbox, tmp_path
):
    _exactly_once(make_sandbox, tmp_path, 1000)


def test_exactly_once_when_the_server_ignores_filters(make_sandbox, tmp_path):
    _exactly_once(make_sandbox, tmp_path, 200, ignore_filters=True)


def test_batch_mode_maps_each_job_back_to_its_row(sandbox):
    from importer.send import send_batches

    items = payloads(5)
    items[2] = items[2]._replace(params={**items[2].params, "contactId": 9999})
    outcomes = {}

    async def go():
        async with IvvyClient(sandbox.credentials) as client:
            await send_batches(
                client,
                items,
                lambda p, o: outcomes.__setitem__(p.row.number, o),
                SendOptions(settle=SETTLE),
            )

    asyncio.run(go())
    assert [outcomes[n].result for n in range(2, 7)] == [
        "created", "created", "failed", "created", "created",
    ]  # fmt: skip
    assert outcomes[4].error_code == 24390
    stored = {t["name"]: t["id"] for t in sandbox.tasks()}
    assert all(outcomes[n].task_id == stored[f"T{n - 2}"] for n in (2, 3, 5, 6))
    assert sandbox.stats()["by_action"]["batch.run"] == 1


def test_batch_mode_is_exactly_once_through_failures_and_lost_answers(make_sandbox, tmp_path):
    import csv as csv_module

    from click.testing import CliRunner

    from importer.cli import main

    from .test_cli_run import env_for, read_results

    server = make_sandbox(fail_rate=0.05, drop_rate=0.2, random_seed=7)
    source = tmp_path / "b.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["name", "endDatetime"])
        writer.writerows([f"Task {n}", DUE] for n in range(1000))
    args = ["run", str(source), "--via", "batch", "--json", "--settle-s", "1"]
    outcome = CliRunner().invoke(main, args, env=env_for(server))
    rows = read_results(tmp_path / "b.results.csv")
    assert len(rows) == 1000
    pending = [r for r in rows if r["result"] != "created"]
    # Rows of a batch whose answer was lost and that a look-up did not find may still run:
    # they are not sent again in this run, and --resume settles them.
    assert {r["error_code"] for r in pending} <= {"BATCH_PENDING"}
    assert outcome.exit_code == (1 if pending else 0), outcome.output
    assert len(server.tasks()) == len(rows) - len(pending)
    for _ in range(6):  # each resume settles them; a few may meet another lost batch answer
        if not pending:
            break
        again = CliRunner().invoke(main, [*args, "--resume"], env=env_for(server))
        rows = read_results(tmp_path / "b.results.csv")
        pending = [r for r in rows if r["result"] != "created"]
        assert again.exit_code == (1 if pending else 0), again.output
    assert not pending
    by_name = {t["name"]: t["id"] for t in server.tasks()}
    assert len(server.tasks()) == 1000 and len(by_name) == 1000
    assert all(int(r["task_id"]) == by_name[r["name"]] for r in rows)
    stats = server.stats()  # (lost answers alone: the test above, with every answer lost)
    assert stats["failures_injected"] > 0 and stats["by_action"]["batch.run"] >= 5


def test_a_batch_whose_run_answer_was_lost_is_looked_up_not_resent(make_sandbox):
    from importer.send import send_batches

    server = make_sandbox(drop_rate=1.0)
    outcomes = {}

    async def go():
        async with IvvyClient(server.credentials) as client:
            await send_batches(
                client,
                payloads(450),
                lambda p, o: outcomes.__setitem__(p.row.number, o),
                SendOptions(settle=SETTLE),
            )

    asyncio.run(go())
    stored = {t["name"]: t["id"] for t in server.tasks()}
    assert len(server.tasks()) == 450 == len(stored)
    assert server.stats()["by_action"]["batch.run"] == 3  # 200 + 200 + 50, none sent again
    assert all(outcomes[n].task_id == stored[f"T{n - 2}"] for n in range(2, 452))


def test_an_error_recording_an_outcome_stops_the_send_and_is_raised(sandbox):
    """What records outcomes fails (the journal's database went away): no worker takes a new
    row, the rows in flight are answered, and the error is raised to the caller, never lost."""
    recorded: list[int] = []
    raised: list[int] = []

    class Lost(Exception):
        pass

    def record(payload, outcome):
        if len(recorded) == 5 and not raised:  # once: the other workers could go on
            raised.append(payload.row.number)
            raise Lost("the journal went away")
        recorded.append(payload.row.number)

    async def go():
        async with IvvyClient(sandbox.credentials) as client:
            await send_all(client, payloads(200), record, SendOptions(concurrency=4))

    try:
        asyncio.run(go())
    except Lost:
        pass
    else:
        raise AssertionError("send_all swallowed the error")
    assert 5 <= len(recorded) < 20
    sent = sandbox.get("/_sandbox/requests?action=addOrUpdateTask")
    assert len(sent) < 20  # the workers stopped taking rows (a few were in flight)


def test_a_send_cancelled_at_once_leaves_nothing_running_or_unretrieved(make_sandbox, caplog):
    """A second Ctrl-C cancels the send while rows are in flight, after a first one set the
    stop: every row in flight is ended and reported there, and no task or future is left
    behind with an error nobody took ("_GatheringFuture exception was never retrieved")."""
    import gc
    import logging

    server = make_sandbox(latency_ms=300)
    heard: list[int] = []

    async def go():
        async with IvvyClient(server.credentials) as client:
            stop = asyncio.Event()
            send = asyncio.ensure_future(send_all(
                client, payloads(100), lambda p, o: heard.append(p.row.number),
                SendOptions(concurrency=8, grace=5.0), stop=stop,
            ))  # fmt: skip
            while len(server.get("/_sandbox/requests?action=addOrUpdateTask")) < 8:
                await asyncio.sleep(0.01)
            stop.set()  # the first Ctrl-C
            await asyncio.sleep(0.05)
            send.cancel()  # the second, inside the grace
            with contextlib.suppress(asyncio.CancelledError):
                await send
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            return left

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        left = asyncio.run(go())
        gc.collect()
    assert left == []  # nothing of the send still running
    assert len(heard) == 8  # each row in flight reported (interrupted)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
