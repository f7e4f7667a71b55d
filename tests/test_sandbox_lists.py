"""Look-up calls on the sandbox: pagination, filters, single records, and --ignore-filters."""

from __future__ import annotations

import asyncio

import pytest

from importer.client import ApiError, IvvyClient

from .conftest import call, raises


def ids(page):
    # Compared as integers: contacts' and companies' ids come as numeric strings.
    return [int(r["id"]) for r in page["results"]]


def test_pages_are_record_offsets_with_meta(sandbox):
    page = call(sandbox, "contact", "getContactList", {"perPage": 30, "start": 60})
    assert ids(page) == list(range(61, 91))
    assert page["meta"] == {"totalResults": 200, "start": 60, "perPage": 30, "count": 30}


def test_per_page_is_capped_silently_at_100(sandbox):
    page = call(sandbox, "contact", "getContactList", {"perPage": 500})
    assert len(page["results"]) == 100
    assert page["meta"]["totalResults"] == 200


def test_start_past_the_end_is_an_empty_page(sandbox):
    page = call(sandbox, "crm", "getLeadList", {"start": 1000})
    assert page["results"] == [] and page["meta"]["totalResults"] == 30


def test_bad_per_page_is_23016(sandbox):
    exc = raises(sandbox, "contact", "getContactList", {"perPage": "many"})
    assert isinstance(exc, ApiError) and exc.specific_code == 23016


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"email": "contact7@example.com"}, [7]),
        ({"email": "CONTACT7@EXAMPLE.COM"}, [7]),
        ({"email__BEGINS": "contact19"}, [19, *range(190, 200)]),
        ({"email__ENDS": "9@example.com", "id__LESSTHAN": 30}, [9, 19, 29]),
        ({"id__GREATERTHAN": 198}, [198, 199, 200]),
        ({"id__LESSTHAN": 2}, [1, 2]),
        ({"externalId__CONTAINS": "-019"}, [*range(190, 200)]),
        ({"companyId": 3}, [3, 53]),
        ({"companyId__NOT": 3, "id__LESSTHAN": 4}, [1, 2, 4]),
        ({"companyId": "__ISNULL__", "id__LESSTHAN": 102}, [101, 102]),
        ({"companyId__EMPTY": True, "id__LESSTHAN": 102}, [101, 102]),
        ({"email__NOTCONTAINS": "contact1", "id__LESSTHAN": 11}, [*range(2, 10)]),
    ],
)
def test_filters(sandbox, flt, expected):
    page = call(sandbox, "contact", "getContactList", {"filter": flt})
    assert ids(page) == expected
    assert page["meta"]["totalResults"] == len(expected)


def test_ignore_filters_returns_everything(make_sandbox):
    server = make_sandbox(ignore_filters=True)
    page = call(server, "contact", "getContactList", {"filter": {"email": "contact7@example.com"}})
    assert page["meta"]["totalResults"] == 200


def test_get_contact_and_unknown_contact_24096(sandbox):
    assert call(sandbox, "contact", "getContact", {"id": 5})["email"] == "contact5@example.com"
    exc = raises(sandbox, "contact", "getContact", {"id": 5000})
    assert isinstance(exc, ApiError) and exc.specific_code == 24096


def test_get_company_and_unknown_company_24153(sandbox):
    assert call(sandbox, "contact", "getCompany", {"id": 50})["id"] == "50"
    exc = raises(sandbox, "contact", "getCompany", {"id": 51})
    assert isinstance(exc, ApiError) and exc.specific_code == 24153


def test_company_list(sandbox):
    assert call(sandbox, "contact", "getCompanyList")["meta"]["totalResults"] == 50


def test_leads_have_no_venue_and_opportunities_have_one(sandbox):
    leads = call(sandbox, "crm", "getLeadList")["results"]
    assert [lead["id"] for lead in leads] == list(range(1, 31))
    assert all("venueId" not in lead for lead in leads)
    opportunities = call(sandbox, "crm", "getOpportunityList")["results"]
    assert [o["id"] for o in opportunities] == list(range(31, 51))
    assert all(o["venueId"] in (1, 2, 3) for o in opportunities)


def test_opportunity_list_by_venue_ids(sandbox):
    page = call(sandbox, "crm", "getOpportunityList", {"venueIds": [2]})
    assert page["results"] and all(o["venueId"] == 2 for o in page["results"])


def test_users_and_venues_with_time_zones(sandbox):
    users = call(sandbox, "account", "getUserList")["results"]
    assert [u["id"] for u in users] == list(range(1, 11))
    assert users[2]["email"] == "user3@example.com"
    venues = call(sandbox, "venue", "getVenueList")["results"]
    assert [(v["id"], v["timezone"]) for v in venues] == [
        (1, "Australia/Brisbane"),
        (2, "Australia/Sydney"),
        (3, "Europe/London"),
    ]


def test_task_list_shows_created_tasks_with_utc_and_user(sandbox):
    params = {"name": "Call", "endDatetime": "2026-12-01 09:30:00", "assignedUserId": 3}
    task_id = call(sandbox, "crm", "addOrUpdateTask", params)["id"]
    page = call(sandbox, "crm", "getTaskList", {"filter": {"name": "Call"}})
    (task,) = page["results"]
    assert task["id"] == task_id
    assert task["endDatetime"] == "2026-12-01 09:30:00 UTC"
    assert task["assignedUserEmail"] == "user3@example.com"
    by_date = {"filter": {"endDatetime": "2026-12-01 09:30:00"}}
    assert ids(call(sandbox, "crm", "getTaskList", by_date)) == [task_id]


def test_client_walks_every_page(sandbox):
    async def walk():
        async with IvvyClient(sandbox.credentials) as client:
            return [
                int(r["id"])
                async for r in client.iter_collection("contact", "getContactList", per_page=30)
            ]

    assert asyncio.run(walk()) == list(range(1, 201))
