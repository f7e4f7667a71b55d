"""The account's records that validation needs, fetched once per run and never one call per row.

iVvy has no filter on ids and no "in a set" operator, so for contacts and companies the directory
asks for each distinct id (``getContact``/``getCompany``) or reads the whole list, whichever takes
fewer calls: a first page of the list tells how many pages there are. Users, venues, leads and
opportunities are few and are read once; tasks have no single-record call and are read as a list.
Every record is matched here, by id or e-mail, so a server that ignores a list's ``filter`` gives
the same answers, only more slowly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .client import ApiError, IvvyClient

PER_PAGE = 100
#: getContact / getCompany answer these codes for an id that does not exist.
_NOT_FOUND = {"contact": 24096, "company": 24153}
_ONE = {"contact": ("contact", "getContact"), "company": ("contact", "getCompany")}
_LIST = {
    "contact": ("contact", "getContactList"),
    "company": ("contact", "getCompanyList"),
    "user": ("account", "getUserList"),
    "venue": ("venue", "getVenueList"),
    "task": ("crm", "getTaskList"),
    "lead": ("crm", "getLeadList"),
    "opportunity": ("crm", "getOpportunityList"),
}


async def tasks_among(client: IvvyClient, wanted: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The tasks among ``wanted`` as iVvy lists them now, by id: one pass over getTaskList (no
    single-task call exists), ended as soon as every one is found; a task not listed (deleted,
    or not visible to this key) is absent."""
    left = set(wanted)
    found: dict[int, dict[str, Any]] = {}
    if not left:
        return found
    async for task in client.iter_collection(*_LIST["task"]):
        ident = int(task.get("id") or 0)
        if ident in left:
            found[ident] = dict(task)
            left.discard(ident)
            if not left:
                break
    return found


@dataclass
class Needed:
    """The distinct ids and e-mails a source refers to, by kind."""

    ids: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    user_emails: set[str] = field(default_factory=set)
    contact_emails: set[str] = field(default_factory=set)


def _email(record: Mapping[str, Any]) -> str:
    return str(record.get("email") or "").strip().lower()


class Directory:
    """Answers validation's questions from records fetched by :meth:`load`."""

    def __init__(self, client: IvvyClient) -> None:
        self._client = client
        self._known: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
        self._leads: set[int] = set()
        self._opportunities: dict[int, Any] = {}
        self._users_by_email: dict[str, list[int]] = defaultdict(list)
        self._contacts_by_email: dict[str, list[int]] = defaultdict(list)
        #: API calls made, by call, for a person (and the tests) to see what it cost.
        self.calls: dict[str, int] = defaultdict(int)

    async def load(self, needed: Needed) -> None:
        """Fetch what ``needed`` refers to."""
        ids = needed.ids
        if ids.get("user") or needed.user_emails:
            for user in await self._all("user"):
                self._known["user"][int(user["id"])] = user
                self._users_by_email[_email(user)].append(int(user["id"]))
        if ids.get("venue"):
            for venue in await self._all("venue"):
                self._known["venue"][int(venue["id"])] = venue
        if ids.get("lead"):
            self._leads = {int(lead["id"]) for lead in await self._all("lead")}
            self._opportunities = {
                int(o["id"]): o.get("venueId") for o in await self._all("opportunity")
            }
        if ids.get("task"):
            wanted = ids["task"]
            for task in await self._all("task"):
                if int(task["id"]) in wanted:
                    self._known["task"][int(task["id"])] = task
        for kind in ("contact", "company"):
            if ids.get(kind):
                await self._load_ids(kind, ids[kind])
        if needed.contact_emails:
            await self._load_contact_emails(needed.contact_emails)

    async def _page(self, kind: str, start: int, flt: Mapping[str, Any] | None = None) -> Any:
        namespace, action = _LIST[kind]
        params: dict[str, Any] = {"perPage": PER_PAGE, "start": start}
        if flt:
            params["filter"] = dict(flt)
        self.calls[f"{namespace}.{action}"] += 1
        return await self._client.call(namespace, action, params)

    async def _all(self, kind: str, first: Any = None) -> list[Mapping[str, Any]]:
        """Every record of a list, page by page (``first``: a first page already fetched)."""
        records: list[Mapping[str, Any]] = []
        page = first if first is not None else await self._page(kind, 0)
        while True:
            results = (page.get("results") or []) if isinstance(page, dict) else []
            records.extend(results)
            total = (page.get("meta") or {}).get("totalResults") if isinstance(page, dict) else None
            if not results or (isinstance(total, int) and len(records) >= total):
                return records
            page = await self._page(kind, len(records))

    async def _load_ids(self, kind: str, wanted: set[int]) -> None:
        """Each distinct id by its own call, or the whole list: whichever takes fewer calls."""
        first = await self._page(kind, 0)
        self._keep(kind, first.get("results") or [], wanted)
        missing = wanted - set(self._known[kind])
        total = (first.get("meta") or {}).get("totalResults")
        pages = math.ceil(total / PER_PAGE) if isinstance(total, int) else None
        if pages is not None and len(missing) < pages - 1:
            namespace, action = _ONE[kind]
            for ident in sorted(missing):
                self.calls[f"{namespace}.{action}"] += 1
                try:
                    record = await self._client.call(namespace, action, {"id": ident})
                except ApiError as exc:
                    if exc.specific_code == _NOT_FOUND[kind]:
                        continue
                    raise
                self._keep(kind, [record], wanted)
        else:
            self._keep(kind, await self._all(kind, first), wanted)

    def _keep(self, kind: str, records: Iterable[Mapping[str, Any]], wanted: set[int]) -> None:
        for record in records:
            try:
                ident = int(record["id"])
            except (KeyError, TypeError, ValueError):
                continue
            if ident in wanted:
                self._known[kind][ident] = record

    async def _load_contact_emails(self, emails: set[str]) -> None:
        """Contacts by e-mail: a filtered list per e-mail where the server honours the filter
        (every answer is matched here), else one read of the whole list."""
        first = await self._page("contact", 0)
        total = (first.get("meta") or {}).get("totalResults")
        pages = math.ceil(total / PER_PAGE) if isinstance(total, int) else None
        if pages is not None and len(emails) < pages - 1:
            for email in sorted(emails):
                page = await self._page("contact", 0, {"email": email})
                results = page.get("results") or []
                if any(_email(r) != email for r in results) or (
                    len(results) >= PER_PAGE
                ):  # the filter was ignored: read everything once instead
                    break
                self._index_contacts(results)
            else:
                return
        self._contacts_by_email.clear()
        self._index_contacts(await self._all("contact", first))

    def _index_contacts(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            ident = int(record["id"])
            self._known["contact"][ident] = record  # found by e-mail: it exists
            if ident not in self._contacts_by_email[_email(record)]:
                self._contacts_by_email[_email(record)].append(ident)

    # ----- the questions (importer.validate.Directory) -----------------------------------------

    def task(self, task_id: int) -> Mapping[str, Any] | None:
        return self._known["task"].get(task_id)

    def lead_kind(self, lead_id: int) -> str | None:
        if lead_id in self._opportunities:
            return "opportunity"
        return "lead" if lead_id in self._leads else None

    def opportunity_venue(self, lead_id: int) -> int | None:
        venue = self._opportunities.get(lead_id)
        return int(venue) if venue not in (None, "") else None

    def has(self, kind: str, ident: int) -> bool:
        return ident in self._known[kind]

    def user_by_email(self, email: str) -> list[int]:
        return list(self._users_by_email.get(email.strip().lower(), []))

    def contact_by_email(self, email: str) -> list[int]:
        return list(self._contacts_by_email.get(email.strip().lower(), []))
