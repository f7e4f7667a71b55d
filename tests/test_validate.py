"""The validate stage: the API's rules offline, online checks through the directory, and the
differential test that keeps the validator and the sandbox honest."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.client import ApiError, IvvyClient
from importer.directory import Directory, Needed
from importer.sandbox import default_seed
from importer.validate import Email, check_params, resolve_emails

DUE = "2026-12-01 09:00:00"


def code(params, directory=None, **kw):
    checked = check_params(params, directory, **kw)
    return checked.error.code if checked.error else "ok"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"name": "x", "endDatetime": DUE}, "ok"),
        ({"endDatetime": DUE}, 23017),
        ({"name": "  ", "endDatetime": DUE}, 23017),
        ({"name": "x"}, 23017),
        ({"name": "x", "endDatetime": DUE, "contactId": "12a"}, 23016),
        ({"name": "x", "endDatetime": DUE, "contactId": 12.0}, 23016),
        ({"name": "x", "endDatetime": DUE, "contactId": True}, 23016),
        ({"name": "x", "endDatetime": DUE, "contactId": 0}, 23016),
        ({"name": "x", "endDatetime": DUE, "status": 7}, 23016),
        ({"name": "x", "endDatetime": DUE, "priority": "urgent"}, 23016),
        ({"name": "x", "endDatetime": "2026-02-30 10:00:00"}, 23016),
        ({"name": "x", "endDatetime": DUE, "leadId": 3, "contactId": 5}, 24396),
        ({"name": "x", "endDatetime": DUE, "leadId": 3, "companyId": 5}, 24396),
        ({"id": 4}, "NOTHING_TO_UPDATE"),
        ({"id": 4, "status": 4}, "ok"),
        ({"id": 4, "name": " "}, 23016),
    ],
)
def test_offline_rules(params, expected):
    assert code(params) == expected


def test_contact_and_company_is_a_warning():
    checked = check_params({"name": "x", "endDatetime": DUE, "contactId": 5, "companyId": 3})
    assert checked.error is None
    assert "files the task under the company" in checked.warnings[0]


def directory_for(server, needed):
    async def go():
        async with IvvyClient(server.credentials) as client:
            directory = Directory(client)
            await directory.load(needed)
            return directory

    return asyncio.run(go())


def needed(**ids):
    wanted = Needed()
    for kind, values in ids.items():
        wanted.ids[kind].update(values)
    return wanted


def test_online_codes(sandbox):
    directory = directory_for(
        sandbox,
        needed(contact={12, 9999}, company={3, 99}, lead={4, 40, 999}, venue={2, 9},
               user={3, 99}, task={77}),
    )  # fmt: skip
    base = {"name": "x", "endDatetime": DUE}
    assert code({**base, "contactId": 12}, directory) == "ok"
    assert code({**base, "contactId": 9999}, directory) == 24390
    assert code({**base, "companyId": 99}, directory) == 24391
    assert code({**base, "leadId": 999}, directory) == 24389
    assert code({"id": 77, "status": 1}, directory) == 24392
    assert code({**base, "venueId": 9}, directory) == 24395
    assert code({**base, "assignedUserId": 99}, directory) == 24395
    assert code({**base, "leadId": 4}, directory) == "ok"  # a lead needs no venue
    assert code({**base, "leadId": 40}, directory) == 23017  # an opportunity does
    checked = check_params({**base, "leadId": 40}, directory, default_venue=2)
    assert checked.error is None and checked.params["venueId"] == 2


def test_emails_resolve_to_ids_and_say_what_is_wrong(make_sandbox):
    seed = default_seed()
    seed["contacts"].append({"id": 201, "email": "contact5@example.com"})  # a second one
    server = make_sandbox(seed=seed)
    wanted = Needed(user_emails={"user3@example.com", "nobody@example.com"},
                    contact_emails={"contact7@example.com", "contact5@example.com"})  # fmt: skip
    directory = directory_for(server, wanted)
    params = {
        "assignedUserId": Email("USER3@example.com"),
        "contactId": Email("contact7@example.com"),
    }
    assert resolve_emails(params, directory) is None
    assert params == {"assignedUserId": 3, "contactId": 7}
    finding = resolve_emails({"assignedUserId": Email("nobody@example.com")}, directory)
    assert finding.code == 23016 and "no user in iVvy has the e-mail" in finding.message
    finding = resolve_emails({"contactId": Email("contact5@example.com")}, directory)
    assert "2 contacts have the e-mail contact5@example.com (ids 5, 201)" in finding.message
    offline = resolve_emails({"contactId": Email("contact7@example.com")}, None)
    assert offline.code == "UNRESOLVED"


@pytest.mark.parametrize("ignore_filters", [False, True])
def test_same_verdicts_when_the_server_ignores_filters(make_sandbox, ignore_filters):
    server = make_sandbox(ignore_filters=ignore_filters)
    wanted = Needed(contact_emails={"contact7@example.com", "nobody@example.com"})
    directory = directory_for(server, wanted)
    assert directory.contact_by_email("contact7@example.com") == [7]
    assert directory.contact_by_email("nobody@example.com") == []


def test_few_distinct_ids_are_fetched_one_by_one(make_sandbox):
    seed = default_seed()
    seed["contacts"] = [{"id": n, "email": f"c{n}@example.com"} for n in range(1, 1001)]
    server = make_sandbox(seed=seed)
    directory = directory_for(server, needed(contact={3, 150, 620, 5000}))
    assert directory.has("contact", 620) and not directory.has("contact", 5000)
    # one first page (10 pages in all), then one call per id not on it: 4 calls, not 10
    assert directory.calls["contact.getContactList"] == 1
    assert directory.calls["contact.getContact"] == 3  # 3 was on the first page


def test_many_distinct_ids_read_the_whole_list(sandbox):
    directory = directory_for(sandbox, needed(contact=set(range(1, 205))))
    assert directory.calls["contact.getContactList"] == 2  # 200 contacts, 100 a page
    assert "contact.getContact" not in directory.calls
    assert directory.has("contact", 200) and not directory.has("contact", 204)


# ----- the differential test ---------------------------------------------------------------------

ids = st.one_of(st.integers(min_value=1, max_value=60), st.integers(min_value=190, max_value=230))
wrong = st.one_of(st.text(max_size=3), st.booleans(), st.floats(allow_nan=False), st.just(0))
stamps = st.one_of(
    st.just(DUE), st.just("2026-02-30 10:00:00"), st.just("01/12/2026"), st.just(f"{DUE} UTC")
)
fields = {
    "name": st.one_of(st.just("Call"), st.just(" "), st.integers(max_value=5)),
    "endDatetime": stamps,
    "priority": st.sampled_from(["low", "medium", "high", "urgent", "High"]),
    "status": st.one_of(st.integers(min_value=-1, max_value=6), wrong),
    "contactId": st.one_of(ids, wrong),
    "companyId": st.one_of(ids, wrong),
    "leadId": st.one_of(ids, wrong),
    "venueId": st.one_of(st.integers(min_value=1, max_value=5), wrong),
    "assignedUserId": st.one_of(st.integers(min_value=1, max_value=12), wrong),
    "description": st.one_of(st.just("notes"), st.integers()),
}
required = ("name", "endDatetime")
payloads = st.fixed_dictionaries(
    {name: fields[name] for name in required},
    optional={
        **{k: v for k, v in fields.items() if k not in required},
        "id": st.one_of(st.integers(min_value=1, max_value=8), wrong),
    },
)


@pytest.fixture(scope="module")
def seeded(request):
    from importer.sandbox import SandboxConfig, SandboxServer

    seed = default_seed()
    seed["tasks"] = [
        {"id": n, "name": f"Old {n}", "endDatetime": DUE, "venueId": 1 if n % 2 else None,
         "status": 0}
        for n in range(1, 6)
    ]  # fmt: skip
    with SandboxServer(SandboxConfig(seed=seed)) as server:
        every = needed(
            contact=set(range(1, 231)), company=set(range(1, 231)), lead=set(range(1, 231)),
            venue=set(range(1, 6)), user=set(range(1, 13)), task=set(range(1, 9)),
        )  # fmt: skip
        # One loop and one client for every example (a client of its own each took most of
        # the test's time, in connections opened).
        with asyncio.Runner() as runner:
            client = IvvyClient(server.credentials)
            runner.run(client.__aenter__())
            try:
                yield server, directory_for(server, every), runner, client
            finally:
                runner.run(client.__aexit__(None, None, None))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=payloads, drop=st.sets(st.sampled_from(["name", "endDatetime"])))
def test_the_validator_predicts_the_sandbox(seeded, params, drop):
    server, directory, runner, client = seeded
    params = {k: v for k, v in params.items() if k not in drop}
    others = [v for k, v in params.items() if k != "id"]
    if params.get("id") not in (None, "") and all(v in (None, "") for v in others):
        # "An update must change something" (blank cells change nothing: they are not sent) is
        # the importer's own rule, not the API's.
        return
    server.reset()
    checked = check_params(params, directory)
    predicted = checked.error.code if checked.error else "ok"
    try:
        # What the importer would send: the validator's params ("0" made the number 0, as
        # the strict sandbox wants it; a row it refuses is never sent at all).
        runner.run(client.add_or_update_task(checked.params))
        answered = "ok"
    except ApiError as exc:
        answered = exc.specific_code
    assert predicted == answered, params


def test_identical_rows_are_told_on_the_terminal_not_only_in_the_results(tmp_path):
    """tests/data/identical-rows.csv: row 3 repeats row 2."""
    import json

    from click.testing import CliRunner

    from importer.cli import main

    from .conftest import REPOSITORY

    args = ["validate", str(REPOSITORY / "tests" / "data" / "identical-rows.csv"), "--offline",
            "--results", str(tmp_path / "r.csv"), "--json"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    warnings = json.loads(outcome.stdout.strip().splitlines()[-1])["warnings"]
    assert (
        "1 row is identical to an earlier row (row 3; the results' warnings name the row "
        "each repeats): each is a task of its own" in warnings
    )


_ANY_VALUE = st.one_of(
    st.none(), st.just(""), st.just("  "), st.booleans(), st.integers(-2, 5), st.floats(0, 3),
    st.sampled_from(["1", " 2 ", "x", "low", "High", "medium", "2026-03-04 10:15:00",
                     "2026-02-30 10:15:00", "2026-03-04 10:15:00 UTC", "a name"]),
)  # fmt: skip


_FIELD_NAMES = ["id", "venueId", "leadId", "contactId", "companyId", "name", "endDatetime",
                "priority", "assignedUserId", "status", "description", "other"]  # fmt: skip


@given(st.dictionaries(st.sampled_from(_FIELD_NAMES), _ANY_VALUE))
def test_the_one_pass_check_gives_the_verdict_of_the_check_in_the_references_order(params):
    """check_params takes one pass over what is given when all is well: its verdict (payload,
    error, warnings) is always the one of the field-by-field check in the reference's order."""
    import sys
    from unittest import mock

    validate_module = sys.modules["importer.validate"]  # (importer.validate is the function)

    quick = check_params(params)
    with mock.patch.object(validate_module, "_well_typed", lambda params, creating: None):
        ordered = check_params(params)
    assert quick == ordered
    assert [type(v) for v in quick.params.values()] == [type(v) for v in ordered.params.values()]


_TIMESTAMP_TEXTS = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(" ", "seconds")),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat(" ", "seconds")),
    st.datetimes().map(lambda d: d.isoformat("T", "seconds")),
    st.datetimes().map(lambda d: d.isoformat(" ")),
    st.datetimes().map(lambda d: d.isoformat(" ", "seconds") + " UTC"),
    st.datetimes().map(lambda d: d.isoformat(" ", "seconds").replace("2", "\u0662")),
    st.dates().map(str),
    st.sampled_from(["2026-02-30 10:00:00", "2026-13-01 10:00:00", "2026-01-01 24:00:00",
                     "0000-01-01 00:00:00", "2026-01-01 10:00", " 2026-01-01 10:00:00"]),
    st.text(max_size=20),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_TIMESTAMP_TEXTS, max_size=30))
def test_a_column_of_timestamps_is_judged_as_each_by_itself(texts):
    """The block path judges a column of timestamps at once: as each would be by itself."""
    from importer.validate import _are_timestamps, _is_timestamp

    assert _are_timestamps(texts) == [_is_timestamp(t) for t in texts]
