"""crm?action=addOrUpdateTask on the sandbox: every rule and code of the API page."""

from __future__ import annotations

import pytest

from importer.client import ApiError

from .conftest import call, raises

DUE = "2026-12-01 09:30:00"


def add(sandbox, **params):
    return call(sandbox, "crm", "addOrUpdateTask", params)


def refused(sandbox, **params) -> ApiError:
    exc = raises(sandbox, "crm", "addOrUpdateTask", params)
    assert isinstance(exc, ApiError), exc
    return exc


def stored(sandbox, task_id):
    return next(t for t in sandbox.tasks() if t["id"] == task_id)


def test_create_answers_success_and_the_new_id(sandbox):
    answer = add(sandbox, name="Call", endDatetime=DUE, contactId=12)
    assert answer == {"success": True, "id": 1}
    task = stored(sandbox, 1)
    assert (task["name"], task["endDatetime"], task["contactId"]) == ("Call", f"{DUE} UTC", 12)


def test_create_then_update_changes_only_what_is_given(sandbox):
    task_id = add(sandbox, name="Call", endDatetime=DUE, priority="low", contactId=12)["id"]
    answer = add(sandbox, id=task_id, priority="high", status=4)
    assert answer == {"success": True, "id": task_id}
    task = stored(sandbox, task_id)
    assert (task["name"], task["priority"], task["status"], task["contactId"]) == (
        "Call",
        "high",
        4,
        12,
    )
    assert len(sandbox.tasks()) == 1


def test_missing_name_on_create_is_23017(sandbox):
    exc = refused(sandbox, endDatetime=DUE)
    assert (exc.error_code, exc.specific_code, exc.message) == (400, 23017, "'name' is required")


def test_blank_name_on_create_is_23017(sandbox):
    assert refused(sandbox, name="  ", endDatetime=DUE).specific_code == 23017


def test_missing_end_datetime_on_create_is_23017(sandbox):
    exc = refused(sandbox, name="Call")
    assert exc.specific_code == 23017
    assert exc.message == "'endDatetime' is required"


def test_update_needs_neither_name_nor_due_date(sandbox):
    task_id = add(sandbox, name="Call", endDatetime=DUE)["id"]
    assert add(sandbox, id=task_id, description="more")["id"] == task_id


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"contactId": "abc"}, "contactId"),
        ({"contactId": 12.5}, "contactId"),
        ({"companyId": True}, "companyId"),
        ({"assignedUserId": [1]}, "assignedUserId"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": "High"}, "priority"),
        ({"status": 7}, "status"),
        ({"status": "done"}, "status"),
        ({"endDatetime": "01/12/2026"}, "endDatetime"),
        ({"endDatetime": "2026-02-30 10:00:00"}, "endDatetime"),
        ({"name": 42}, "name"),
        ({"description": {"x": 1}}, "description"),
        ({"id": "x"}, "id"),
    ],
)
def test_a_parameter_of_the_wrong_type_or_outside_its_set_is_23016(sandbox, params, field):
    base = {"name": "Call", "endDatetime": DUE}
    exc = refused(sandbox, **{**base, **params})
    assert exc.specific_code == 23016
    assert exc.message == f"'{field}' does not validate"
    assert exc.additional_messages


def test_integers_sent_as_strings_are_refused_by_default(sandbox):
    exc = refused(sandbox, name="Call", endDatetime=DUE, contactId="12")
    assert (exc.specific_code, exc.message) == (23016, "'contactId' does not validate")
    assert refused(sandbox, name="Call", endDatetime=DUE, status="1").specific_code == 23016
    assert sandbox.tasks() == []


def test_whole_number_strings_are_accepted_as_integers_when_lenient(make_sandbox):
    lenient = make_sandbox(strict_types=False)
    task_id = add(lenient, name="Call", endDatetime=DUE, contactId="12", status="1")["id"]
    task = stored(lenient, task_id)
    assert (task["contactId"], task["status"]) == (12, 1)


def test_a_parameter_the_reference_does_not_name_is_refused(sandbox, make_sandbox):
    exc = refused(sandbox, name="Call", endDatetime=DUE, progress=50)
    assert (exc.specific_code, exc.message) == (23016, "'progress' does not validate")
    lenient = make_sandbox(strict_types=False)
    assert add(lenient, name="Call", endDatetime=DUE, progress=50)["success"] is True


def test_end_datetime_with_utc_suffix_is_accepted(sandbox):
    task_id = add(sandbox, name="Call", endDatetime=f"{DUE} UTC")["id"]
    assert stored(sandbox, task_id)["endDatetime"] == f"{DUE} UTC"


def test_unknown_lead_is_24389(sandbox):
    assert refused(sandbox, name="C", endDatetime=DUE, leadId=999).specific_code == 24389


def test_unknown_contact_is_24390(sandbox):
    assert refused(sandbox, name="C", endDatetime=DUE, contactId=9999).specific_code == 24390


def test_unknown_company_is_24391(sandbox):
    assert refused(sandbox, name="C", endDatetime=DUE, companyId=999).specific_code == 24391


def test_update_of_unknown_task_is_24392(sandbox):
    assert refused(sandbox, id=12345, name="C").specific_code == 24392


def test_update_of_a_task_deleted_since_is_24392(sandbox):
    import httpx

    task_id = add(sandbox, name="C", endDatetime=DUE)["id"]
    httpx.delete(f"{sandbox.base_url}/_sandbox/tasks/{task_id}", timeout=10).raise_for_status()
    assert refused(sandbox, id=task_id, status=4).specific_code == 24392


@pytest.mark.parametrize("other", [{"contactId": 5}, {"companyId": 3}])
def test_lead_with_another_parent_is_24396(sandbox, other):
    exc = refused(sandbox, name="C", endDatetime=DUE, leadId=4, **other)
    assert exc.specific_code == 24396


def test_contact_and_company_files_the_task_under_the_company(sandbox):
    task_id = add(sandbox, name="C", endDatetime=DUE, contactId=150, companyId=7)["id"]
    task = stored(sandbox, task_id)
    assert (task["companyId"], task["companyContactId"], task["contactId"]) == (7, 150, None)
    contact = call(sandbox, "contact", "getContact", {"id": 150})
    assert (contact["id"], contact["companyId"]) == ("150", "7")  # as the reference shows ids


def test_lead_needs_no_venue(sandbox):
    task_id = add(sandbox, name="C", endDatetime=DUE, leadId=4)["id"]
    assert stored(sandbox, task_id)["venueId"] is None


def test_opportunity_without_venue_is_23017_venue_id(sandbox):
    exc = refused(sandbox, name="C", endDatetime=DUE, leadId=40)
    assert exc.specific_code == 23017
    assert exc.message == "'venueId' is required"


def test_opportunity_with_venue_is_accepted(sandbox):
    task_id = add(sandbox, name="C", endDatetime=DUE, leadId=40, venueId=2)["id"]
    assert stored(sandbox, task_id)["venueId"] == 2


def test_unknown_assigned_user_is_24395_naming_the_field(sandbox):
    exc = refused(sandbox, name="C", endDatetime=DUE, assignedUserId=99)
    assert exc.specific_code == 24395
    assert any("assignedUserId" in m for m in exc.additional_messages)


def test_unknown_venue_is_24395_naming_the_field(sandbox):
    exc = refused(sandbox, name="C", endDatetime=DUE, venueId=9)
    assert exc.specific_code == 24395
    assert any("venueId" in m for m in exc.additional_messages)


def test_text_reads_back_as_iVvy_shows_it_html(sandbox):
    name = 'Call "Tom" & Jerry <x>'
    description = "line 1 & <b>2</b>\nline 3 — ünïcode"
    task_id = add(sandbox, name=name, endDatetime=DUE, description=description)["id"]
    task = stored(sandbox, task_id)
    assert task["name"] == "Call &quot;Tom&quot; &amp; Jerry &lt;x&gt;"
    assert task["description"] == "<p>line 1 &amp; &lt;b&gt;2&lt;/b&gt;<br />line 3 — ünïcode</p> "
    listed = call(sandbox, "crm", "getTaskList")["results"][0]
    assert (listed["name"], listed["description"]) == (task["name"], task["description"])


def test_strings_are_stored_exactly_as_received_when_verbatim(make_sandbox):
    verbatim = make_sandbox(text="verbatim")
    name = '=HYPERLINK("http://x","y")'
    description = "  <b>line 1</b>\r\nline 2 — ünïcode  "
    task_id = add(verbatim, name=name, endDatetime=DUE, description=description)["id"]
    task = stored(verbatim, task_id)
    assert (task["name"], task["description"]) == (name, description)


def test_an_opportunity_with_another_venue_is_refused_24395(sandbox):
    # Opportunity 31 belongs to venue 2 in the default seed.
    exc = refused(sandbox, name="C", endDatetime=DUE, leadId=31, venueId=1)
    assert exc.specific_code == 24395
    assert exc.additional_messages == ("leadId: *Invalid item selected*",)
    assert add(sandbox, name="C", endDatetime=DUE, leadId=31, venueId=2)["success"] is True


def test_a_body_that_is_not_an_object_is_refused(sandbox):
    exc = raises(sandbox, "crm", "addOrUpdateTask", [1, 2])
    assert isinstance(exc, ApiError) and exc.error_code == 400


def test_unknown_action_is_404(sandbox):
    exc = raises(sandbox, "crm", "deleteTask", {"id": 1})
    assert isinstance(exc, ApiError) and exc.error_code == 404
