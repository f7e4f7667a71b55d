"""The sandbox's data and the API calls over it, written from ivvy-api.md.

Every call takes the decoded JSON parameters and returns the answer body or raises a
:class:`Refusal`. Nothing here knows about HTTP, signatures or the knobs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..fields import PARENT_FIELDS, PRIORITIES, STATUSES, TASK_FIELDS, TIMESTAMP_FORMAT, Field
from ._lists import collection
from ._refusal import Refusal, invalid, required

_WHOLE = re.compile(r"\s*\d+\s*")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})( UTC)?")

Handler = Callable[[Mapping[str, Any]], Any]


def _now() -> str:
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


class Store:
    """The account's records, reset to ``seed`` on demand."""

    def __init__(self, seed: Mapping[str, list[dict[str, Any]]], *, ignore_filters: bool = False):
        self._seed = copy.deepcopy(dict(seed))
        self.ignore_filters = ignore_filters
        self.reset()

    def reset(self) -> None:
        """Back to the seed: seeded records only, task ids counting on from the seed's."""
        seed = copy.deepcopy(self._seed)

        def by_id(kind: str) -> dict[int, dict[str, Any]]:
            return {r["id"]: r for r in sorted(seed.get(kind, []), key=lambda r: r["id"])}

        self.venues = by_id("venues")
        self.users = by_id("users")
        self.contacts = by_id("contacts")
        self.companies = by_id("companies")
        self.leads = by_id("leads")
        self.opportunities = by_id("opportunities")
        self.tasks = by_id("tasks")
        self._next_task_id = max(self.tasks, default=0) + 1

    # ----- the calls -------------------------------------------------------------------------

    def handlers(self) -> dict[tuple[str, str], Handler]:
        """``(namespace, action)`` → the call, for every call the sandbox implements."""
        return {
            ("test", "ping"): self.ping,
            ("crm", "addOrUpdateTask"): self.add_or_update_task,
            ("crm", "getTaskList"): self.get_task_list,
            ("crm", "getLeadList"): self.get_lead_list,
            ("crm", "getOpportunityList"): self.get_opportunity_list,
            ("contact", "getContact"): self.get_contact,
            ("contact", "getCompany"): self.get_company,
            ("contact", "getContactList"): self.get_contact_list,
            ("contact", "getCompanyList"): self.get_company_list,
            ("account", "getUserList"): self.get_user_list,
            ("venue", "getVenueList"): self.get_venue_list,
        }

    def ping(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"success": True, "message": "pong", "timestamp": _now()}

    def add_or_update_task(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Create a task (no ``id``) or update one, with every rule of the API reference."""
        values: dict[str, Any] = {}
        creating = params.get("id") in (None, "")
        for field in TASK_FIELDS:
            raw = params.get(field.name)
            if raw is None or (raw == "" and field.type != "string"):
                if creating and field.required_on_create:
                    raise required(field.name)
                continue
            values[field.name] = _check(field, raw, creating)
        existing = None if creating else self.tasks.get(values["id"])
        if not creating and existing is None:
            raise Refusal(400, "Task does not exist", 24392, [f"No task with id {values['id']}"])
        if "leadId" in values and ("contactId" in values or "companyId" in values):
            raise Refusal(
                400,
                "The task can only belong to one of contact, company or opportunity/lead",
                24396,
            )
        lead_id = values.get("leadId")
        if lead_id is not None and lead_id not in self.leads and lead_id not in self.opportunities:
            raise Refusal(400, "Lead/opportunity does not exist", 24389, [f"leadId {lead_id}"])
        if "contactId" in values and values["contactId"] not in self.contacts:
            raise Refusal(
                400, "Contact does not exist", 24390, [f"contactId {values['contactId']}"]
            )
        if "companyId" in values and values["companyId"] not in self.companies:
            raise Refusal(
                400, "Company does not exist", 24391, [f"companyId {values['companyId']}"]
            )
        for name, table in (("venueId", self.venues), ("assignedUserId", self.users)):
            if name in values and values[name] not in table:
                raise Refusal(
                    400, "Invalid data", 24395, [f"'{name}' {values[name]} does not exist"]
                )
        if lead_id in self.opportunities:
            venue = values.get("venueId", existing.get("venueId") if existing else None)
            if venue is None:
                raise required("venueId", "venueId is required when leadId is an opportunity")

        now = _now()
        if existing is None:
            task = dict.fromkeys(_TASK_KEYS)
            task.update(id=self._next_task_id, status=0, progress=0, createdDate=now)
            self._next_task_id += 1
        else:
            task = existing
        if any(p in values for p in PARENT_FIELDS):
            # A new parent replaces the old one: a task belongs to one parent only.
            task.update(leadId=None, contactId=None, companyId=None, companyContactId=None)
        task.update({k: v for k, v in values.items() if k != "id"})
        if task.get("contactId") is not None and task.get("companyId") is not None:
            # The one allowed pair: the contact joins the company, the task is the company's.
            self.contacts[task["contactId"]]["companyId"] = task["companyId"]
            task["companyContactId"] = task["contactId"]
            task["contactId"] = None
        task["modifiedDate"] = now
        self.tasks[task["id"]] = task
        return {"success": True, "id": task["id"]}

    def task_view(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """A task as getTaskList lists it (user names joined in, ``UTC`` on timestamps)."""
        view = dict(task)
        user = self.users.get(task.get("assignedUserId"))
        view["assignedUserFullName"] = f"{user['firstName']} {user['lastName']}" if user else None
        view["assignedUserEmail"] = user["email"] if user else None
        for key in ("endDatetime", "createdDate", "modifiedDate"):
            if view.get(key):
                view[key] = f"{view[key]} UTC"
        return view

    def get_task_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        tasks = (self.task_view(t) for t in self.tasks.values())
        venue = params.get("venueId")
        if venue not in (None, ""):
            tasks = (t for t in tasks if str(t.get("venueId")) == str(venue))
        return self._collection(sorted(tasks, key=lambda t: t["id"]), params)

    def get_lead_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.leads.values(), params)

    def get_opportunity_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        opportunities = list(self.opportunities.values())
        venue_ids = params.get("venueIds")
        if venue_ids not in (None, "", []):
            if not isinstance(venue_ids, list):
                raise invalid("venueIds", "Value must be an array of venue ids")
            wanted = {str(v) for v in venue_ids}
            opportunities = [o for o in opportunities if str(o.get("venueId")) in wanted]
        return self._collection(opportunities, params)

    def get_contact(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._one(params, self.contacts, 24096, "Contact does not exist")

    def get_company(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._one(params, self.companies, 24153, "Company does not exist")

    def get_contact_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.contacts.values(), params)

    def get_company_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.companies.values(), params)

    def get_user_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.users.values(), params)

    def get_venue_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.venues.values(), params)

    # ----- helpers ---------------------------------------------------------------------------

    def _collection(self, records: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        return collection(records, params, ignore_filters=self.ignore_filters)

    @staticmethod
    def _one(
        params: Mapping[str, Any], table: Mapping[int, Any], code: int, message: str
    ) -> dict[str, Any]:
        raw = params.get("id")
        if raw in (None, ""):
            raise required("id")
        ident = _whole("id", raw)
        if ident not in table:
            raise Refusal(404, message, code, [f"No record with id {ident}"])
        return copy.deepcopy(table[ident])


_TASK_KEYS = (
    "id", "venueId", "bookingId", "leadId", "name", "description", "status", "contactId",
    "companyId", "companyContactId", "assignedUserId", "priority", "endDatetime", "progress",
    "createdDate", "modifiedDate",
)  # fmt: skip


def _whole(name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise invalid(name, "Value must be a whole number")
    if isinstance(raw, str):
        if not _WHOLE.fullmatch(raw):
            raise invalid(name, "Value must be a whole number")
        raw = int(raw)
    return raw


def _check(field: Field, raw: Any, creating: bool) -> Any:
    """The parameter's value in its stored form, or the 23016/23017 refusal for it."""
    name = field.name
    if field.type == "integer":
        value = _whole(name, raw)
        if value < 1:
            raise invalid(name, "Value must be greater than 0")
        return value
    if field.type == "status":
        value = _whole(name, raw)
        if value not in STATUSES:
            raise invalid(name, f"Value must be one of {', '.join(map(str, STATUSES))}")
        return value
    if not isinstance(raw, str):
        raise invalid(name, "Value must be a string")
    if field.type == "priority":
        if raw not in PRIORITIES:
            raise invalid(name, f"Value must be one of {', '.join(PRIORITIES)}")
        return raw
    if field.type == "timestamp":
        match = _TIMESTAMP.fullmatch(raw)
        try:
            if match is None:
                raise ValueError
            datetime.strptime(match.group(1), TIMESTAMP_FORMAT)
        except ValueError:
            raise invalid(name, "Value must be a timestamp YYYY-MM-DD HH:MM:SS (UTC)") from None
        return match.group(1)
    if field.required_on_create and not raw.strip():
        # Stored exactly as received otherwise; a blank required text is missing.
        if creating:
            raise required(name)
        raise invalid(name, "Value must not be empty")
    return raw
