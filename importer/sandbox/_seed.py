"""The sandbox's starting data: a deterministic default, or a JSON file of the same shape.

Shape: ``{"venues": [...], "users": [...], "contacts": [...], "companies": [...],
"leads": [...], "opportunities": [...], "tasks": [...]}``, each a list of records with an ``id``.
Leads belong to the account (no venue); opportunities carry a ``venueId``. Leads and opportunities
share one id space, as they do in addOrUpdateTask's ``leadId``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class SeedError(ValueError):
    """A seed file that cannot be used; the message says why."""


SEED_KINDS = ("venues", "users", "contacts", "companies", "leads", "opportunities", "tasks")

_FIRST = [
    "Ava",
    "Noah",
    "Mia",
    "Liam",
    "Zoe",
    "Ethan",
    "Chloe",
    "Lucas",
    "Ruby",
    "Oscar",
    "Isla",
    "Leo",
    "Grace",
    "Jack",
    "Ella",
    "Henry",
    "Amelia",
    "Max",
    "Sophie",
    "Finn",
]
_LAST = [
    "Nguyen",
    "Smith",
    "Patel",
    "Jones",
    "Williams",
    "Brown",
    "Taylor",
    "Wilson",
    "Chen",
    "Martin",
    "Kelly",
    "Walker",
    "Lee",
    "Harris",
    "Clarke",
    "Young",
]
_COMPANY_KINDS = ("Events", "Group", "Pty Ltd", "Co")
_VENUES = [
    (1, "Riverside Convention Centre", "Australia/Brisbane"),
    (2, "Harbour View Hotel", "Australia/Sydney"),
    (3, "Thames Conference Hall", "Europe/London"),
]


def default_seed() -> dict[str, list[dict[str, Any]]]:
    """The default data: venues 1–3 (each with an IANA time zone), users 1–10, contacts 1–200,
    companies 1–50, leads 1–30 (no venue), opportunities 31–50 (each with a venue), no tasks.

    E-mails are predictable: ``user{n}@example.com`` and ``contact{n}@example.com``.
    """
    venues = [{"id": i, "businessName": name, "timezone": tz} for i, name, tz in _VENUES]
    users = [
        {
            "id": n,
            "firstName": _FIRST[n - 1],
            "lastName": _LAST[n % len(_LAST)],
            "email": f"user{n}@example.com",
            "currentStatus": 2 if n == 10 else 1,
            "userType": 1 if n == 1 else 3,
        }
        for n in range(1, 11)
    ]
    companies = [
        {
            "id": n,
            "businessName": f"{_LAST[n % len(_LAST)]} {_COMPANY_KINDS[n % 4]}",
            "email": f"company{n}@example.com",
            "venueId": (n % 3) + 1,
            "modifiedDate": "2026-01-01 00:00:00",
        }
        for n in range(1, 51)
    ]
    contacts = [
        {
            "id": n,
            "firstName": _FIRST[n % len(_FIRST)],
            "lastName": _LAST[(n * 7) % len(_LAST)],
            "email": f"contact{n}@example.com",
            "companyId": ((n - 1) % 50) + 1 if n <= 100 else None,
            "externalId": f"EXT-{n:04d}",
            "modifiedDate": "2026-01-01 00:00:00",
        }
        for n in range(1, 201)
    ]
    leads = [{"id": n, "name": f"Lead {n}", "stage": "new"} for n in range(1, 31)]
    opportunities = [
        {"id": n, "name": f"Opportunity {n}", "venueId": (n % 3) + 1} for n in range(31, 51)
    ]
    return {
        "venues": venues,
        "users": users,
        "contacts": contacts,
        "companies": companies,
        "leads": leads,
        "opportunities": opportunities,
        "tasks": [],
    }


def load_seed(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """A seed from a JSON file; kinds it leaves out are empty. UsageError when unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SeedError(f"cannot read the sandbox seed {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SeedError(f"sandbox seed {path}: expected a JSON object of lists")
    seed: dict[str, list[dict[str, Any]]] = {}
    for kind in SEED_KINDS:
        records = data.get(kind, [])
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), int) for r in records
        ):
            raise SeedError(f"sandbox seed {path}: {kind!r} must be a list of objects with an id")
        seed[kind] = records
    return seed
