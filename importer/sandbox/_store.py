"""The sandbox's data and the API calls over it, written from the reference (``_reference``).

Every call takes the decoded JSON parameters and returns the answer body or raises a
:class:`Refusal`. Nothing here knows about HTTP, signatures or the fault knobs; it knows how iVvy
stores and shows records:

- text is read back as iVvy shows it (``text="html"``, the default): a description comes back
  wrapped in ``<p>…</p>`` with its entities escaped and a trailing space, as getTaskList's own
  example answers ``"<p>this is description</p> "``, and a name comes back HTML-escaped;
- timestamps are listed with `` UTC``; contacts' and companies' ids as numeric strings, as
  getCompany's example shows them (``string_ids``);
- with ``strict_types`` (the default) an integer parameter must be a JSON integer and a parameter
  the reference does not name is refused, so a client that sends ``"12"`` or an extra field finds
  out here rather than on a real account;
- every task remembers who made it (the importer's client, another writer, the seed) and which
  request did, for the tests (``/_sandbox/tasks`` shows it under ``_sandbox``; the API never does);
- with ``read_lag`` a new task shows in getTaskList only that many seconds after it was written.
"""

from __future__ import annotations

import copy
import html
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from . import _reference as ref
from ._lists import collection
from ._refusal import Refusal, invalid, required

_WHOLE = re.compile(r"\s*\d+\s*")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})( UTC)?")
_PARENTS = ("leadId", "contactId", "companyId")

Handler = Callable[[Mapping[str, Any]], Any]


def as_html(text: str) -> str:
    """A description as iVvy shows it: a paragraph of escaped text, a space after it."""
    body = html.escape(text).replace("\r\n", "\n").replace("\n", "<br />")
    return f"<p>{body}</p> "


class Store:
    """The account's records, reset to ``seed`` on demand."""

    def __init__(
        self,
        seed: Mapping[str, list[dict[str, Any]]],
        *,
        ignore_filters: bool = False,
        text: str = "html",
        strict_types: bool = True,
        string_ids: bool = True,
        empty_text: str = "keep",
        read_lag: float = 0.0,
        clock: Callable[[], datetime],
    ):
        self._seed = copy.deepcopy(dict(seed))
        self.ignore_filters = ignore_filters
        self.text = text
        self.strict_types = strict_types
        self.string_ids = string_ids
        self.empty_text = empty_text
        self.read_lag = read_lag
        self._clock = clock
        #: Who made the next write, and through which request (set by the caller of a handler).
        self.origin = "client"
        self.request: int | None = 0
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
        self.tasks: dict[int, dict[str, Any]] = {}
        #: Per task: who made it, the request that did, when it shows in lists (monotonic).
        self.meta: dict[int, dict[str, Any]] = {}
        for ident, record in by_id("tasks").items():
            task: dict[str, Any] = dict.fromkeys(_STORED_KEYS)
            task.update({k: v for k, v in record.items() if k in _STORED_KEYS})
            task.setdefault("status", 0)
            self.tasks[ident] = task
            self.meta[ident] = {"creator": "seed", "request": None, "visible_at": 0.0}
        self._next_task_id = max(self.tasks, default=0) + 1

    def now(self) -> str:
        return self._clock().strftime(ref.TIMESTAMP)

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
        # The .NET SDK reads the acknowledgement as {"ack": <timestamp>}.
        return {"ack": self.now()}

    def add_or_update_task(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Create a task (no ``id``) or update one, with every rule of the API reference."""
        if self.strict_types:
            unknown = sorted(set(params) - ref.TASK_PARAM_NAMES)
            if unknown:
                raise invalid(unknown[0], "Not a parameter of addOrUpdateTask")
        values: dict[str, Any] = {}
        creating = params.get("id") in (None, "")
        for name, kind, required_on_create in ref.TASK_PARAMS:
            raw = params.get(name)
            if raw is None or (raw == "" and kind != "string"):
                if creating and required_on_create:
                    raise required(name)
                continue
            if raw == "" and not required_on_create:
                # An optional text sent empty: the reference does not say what it does.
                if self.empty_text == "refuse":
                    raise Refusal(400, "The request contains invalid data", ref.INVALID_DATA,
                                  [f"{name}: *Value must not be empty*"])  # fmt: skip
                if self.empty_text == "keep":
                    continue
            values[name] = self._check(name, kind, required_on_create, raw, creating)
        existing = None if creating else self.tasks.get(values["id"])
        if not creating and existing is None:
            raise Refusal(
                400, "Task does not exist", ref.TASK_NOT_FOUND, [f"No task with id {values['id']}"]
            )
        if "leadId" in values and ("contactId" in values or "companyId" in values):
            raise Refusal(
                400,
                "The task can only belong to one of contact, company or opportunity/lead",
                ref.ONE_PARENT,
            )
        lead_id = values.get("leadId")
        if lead_id is not None and lead_id not in self.leads and lead_id not in self.opportunities:
            raise Refusal(400, "Lead/opportunity does not exist", ref.LEAD_NOT_FOUND,
                          [f"leadId {lead_id}"])  # fmt: skip
        if "contactId" in values and values["contactId"] not in self.contacts:
            raise Refusal(400, "Contact does not exist", ref.TASK_CONTACT_NOT_FOUND,
                          [f"contactId {values['contactId']}"])  # fmt: skip
        if "companyId" in values and values["companyId"] not in self.companies:
            raise Refusal(400, "Company does not exist", ref.TASK_COMPANY_NOT_FOUND,
                          [f"companyId {values['companyId']}"])  # fmt: skip
        for name, table in (("venueId", self.venues), ("assignedUserId", self.users)):
            if name in values and values[name] not in table:
                raise _invalid_item(name)
        if lead_id in self.opportunities:
            venue = values.get("venueId", existing.get("venueId") if existing else None)
            if venue is None:
                raise required("venueId", "venueId is required when leadId is an opportunity")
            if venue != self.opportunities[lead_id].get("venueId"):
                # "The api will throw an error for invalid leadId": an opportunity belongs to
                # its own venue only.
                raise _invalid_item("leadId")

        now = self.now()
        if existing is None:
            task: dict[str, Any] = dict.fromkeys(_STORED_KEYS)
            task.update(id=self._next_task_id, status=0, progress=0, createdDate=now)
            self._next_task_id += 1
            self.meta[task["id"]] = {
                "creator": self.origin,
                "request": self.request,
                "visible_at": time.monotonic() + self.read_lag,
            }
        else:
            task = existing
        if any(p in values for p in _PARENTS):
            # A new parent replaces the old one: a task belongs to one parent only.
            task.update(leadId=None, contactId=None, companyId=None, companyContactId=None)
        for name, value in values.items():
            if name == "id":
                continue
            if self.text == "html" and name == "description" and value != "":
                value = as_html(value)
            elif self.text == "html" and name == "name":
                value = html.escape(value)
            task[name] = value
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
        view = {key: task.get(key) for key in ref.TASK_RECORD_KEYS}
        user = self.users.get(task.get("assignedUserId") or 0)
        view["assignedUserFullName"] = f"{user['firstName']} {user['lastName']}" if user else None
        view["assignedUserEmail"] = user["email"] if user else None
        for key in ("endDatetime", "createdDate", "modifiedDate"):
            if view.get(key):
                view[key] = f"{view[key]} UTC"
        return view

    def inspect_tasks(self) -> list[dict[str, Any]]:
        """Every task as getTaskList would list it (lag or not), with who made it."""
        out = []
        for ident in sorted(self.tasks):
            view = self.task_view(self.tasks[ident])
            meta = self.meta.get(ident, {})
            view["_sandbox"] = {"creator": meta.get("creator"), "request": meta.get("request")}
            out.append(view)
        return out

    def get_task_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        visible = (
            t for i, t in sorted(self.tasks.items())
            if self.meta.get(i, {}).get("visible_at", 0.0) <= now
        )  # fmt: skip
        tasks = (self.task_view(t) for t in visible)
        venue = params.get("venueId")
        if venue not in (None, ""):
            tasks = (t for t in tasks if str(t.get("venueId")) == str(venue))
        return self._collection(list(tasks), params)

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
        record = self._one(params, self.contacts, ref.CONTACT_NOT_FOUND, "Contact does not exist")
        return self._shown(record)

    def get_company(self, params: Mapping[str, Any]) -> dict[str, Any]:
        record = self._one(params, self.companies, ref.COMPANY_NOT_FOUND, "Company does not exist")
        return self._shown(record)

    def get_contact_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._shown_page(self._collection(self.contacts.values(), params))

    def get_company_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._shown_page(self._collection(self.companies.values(), params))

    def get_user_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.users.values(), params)

    def get_venue_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._collection(self.venues.values(), params)

    # ----- helpers ---------------------------------------------------------------------------

    def _collection(self, records: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        return collection(records, params, ignore_filters=self.ignore_filters)

    def _shown(self, record: dict[str, Any]) -> dict[str, Any]:
        """Contacts and companies as the reference shows them: ids as numeric strings."""
        if self.string_ids:
            record = {**record, "id": str(record["id"])}
            if record.get("companyId") is not None:
                record["companyId"] = str(record["companyId"])
        return record

    def _shown_page(self, page: dict[str, Any]) -> dict[str, Any]:
        page["results"] = [self._shown(r) for r in page["results"]]
        return page

    def _one(
        self, params: Mapping[str, Any], table: Mapping[int, Any], code: int, message: str
    ) -> dict[str, Any]:
        raw = params.get("id")
        if raw in (None, ""):
            raise required("id")
        ident = self._whole("id", raw)
        if ident not in table:
            raise Refusal(404, message, code, [f"No record with id {ident}"])
        return copy.deepcopy(table[ident])

    def _whole(self, name: str, raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise invalid(name, "Value must be a whole number")
        if isinstance(raw, str):
            if self.strict_types or not _WHOLE.fullmatch(raw):
                raise invalid(name, "Value must be a whole number")
            raw = int(raw)
        return raw

    def _check(self, name: str, kind: str, needed: bool, raw: Any, creating: bool) -> Any:
        """The parameter's value in its stored form, or the 23016/23017 refusal for it."""
        if kind == "integer":
            value = self._whole(name, raw)
            if value < 1:
                raise invalid(name, "Value must be greater than 0")
            return value
        if kind == "status":
            value = self._whole(name, raw)
            if value not in ref.TASK_STATUSES:
                raise invalid(
                    name, f"Value must be one of {', '.join(map(str, ref.TASK_STATUSES))}"
                )
            return value
        if not isinstance(raw, str):
            raise invalid(name, "Value must be a string")
        if kind == "priority":
            if raw not in ref.TASK_PRIORITIES:
                raise invalid(name, f"Value must be one of {', '.join(ref.TASK_PRIORITIES)}")
            return raw
        if kind == "timestamp":
            match = _TIMESTAMP.fullmatch(raw)
            try:
                if match is None:
                    raise ValueError
                datetime.strptime(match.group(1), ref.TIMESTAMP)
            except ValueError:
                raise invalid(name, "Value must be a timestamp YYYY-MM-DD HH:MM:SS (UTC)") from None
            return match.group(1)
        if needed and not raw.strip():
            # Stored as received otherwise; a blank required text is missing.
            if creating:
                raise required(name)
            raise invalid(name, "Value must not be empty")
        return raw


def _invalid_item(name: str) -> Refusal:
    """24395 as the reference's own example: ``leadId: *Invalid item selected*``."""
    return Refusal(400, "The request contains invalid data", ref.INVALID_DATA,
                   [f"{name}: *Invalid item selected*"])  # fmt: skip


_STORED_KEYS = (
    "id", "venueId", "bookingId", "leadId", "name", "description", "status", "contactId",
    "companyId", "companyContactId", "assignedUserId", "priority", "endDatetime", "progress",
    "createdDate", "modifiedDate",
)  # fmt: skip
