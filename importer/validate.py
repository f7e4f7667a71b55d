"""Validate: the API's own rules, checked before anything is sent, with the API's own codes.

Written from ``shared/ivvy-api.md``, on its own (the sandbox implements the same page separately,
and a differential test keeps the two honest). The checks run in the order the API reports them
(it reports the first bad parameter only): each parameter's presence and type in the order of the
reference, then the task to update, the one-parent rule, the parents, the venue and the user, and
the venue an opportunity needs. The checks that need iVvy's records ask a :class:`Directory`; with
none (no credentials) they are skipped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress, repeat
from itertools import count as count_from
from operator import and_, eq, is_, is_not, methodcaller, ne, not_, or_
from typing import Any, Protocol

from .fields import (
    DOES_NOT_VALIDATE,
    INVALID_DATA,
    NO_TASK,
    NOTHING_TO_UPDATE,
    PRIORITIES,
    REQUIRED,
    REQUIRED_ON_CREATE,
    STATUSES,
    TASK_FIELDS,
    UNRESOLVED,
)
from .model import Email, Outcome, Payload

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( UTC)?")


class Directory(Protocol):
    """What the online checks know of the account. Each answer is None when it is not known."""

    def task(self, task_id: int) -> Mapping[str, Any] | None: ...
    def lead_kind(self, lead_id: int) -> str | None: ...  # "lead", "opportunity" or None
    def opportunity_venue(self, lead_id: int) -> int | None: ...
    def has(self, kind: str, ident: int) -> bool: ...  # contact, company, venue, user
    def user_by_email(self, email: str) -> list[int]: ...
    def contact_by_email(self, email: str) -> list[int]: ...


@dataclass(frozen=True)
class Finding:
    code: int | str
    parameter: str | None
    message: str


@dataclass
class Checked:
    """The verdict on one payload: the payload to send (e-mails resolved, the default venue
    filled in), the error that stops it, and warnings."""

    params: dict[str, Any]
    error: Finding | None = None
    warnings: list[str] = field(default_factory=list)


def check_params(
    params: Mapping[str, Any],
    directory: Directory | None = None,
    *,
    default_venue: int | None = None,
) -> Checked:
    """The API's verdict on ``params``, as far as it can be known: offline always, online when a
    ``directory`` is given."""
    creating = params.get("id") in (None, "")
    typed = _well_typed(params, creating)
    params = dict(params) if typed is None else typed
    result = Checked(params)

    def refuse(code: int | str, parameter: str | None, message: str) -> Checked:
        result.error = Finding(code, parameter, message)
        return result

    for name, type_name, required in () if typed is not None else _SPECS:
        value = params.get(name)
        if value is None or (value == "" and type_name != "string"):
            params.pop(name, None)
            if creating and required:
                return refuse(REQUIRED, name, f"{name} is required to create a task")
            continue
        if type_name == "string" and value.__class__ is str and (not required or value.strip()):
            continue  # most cells: text, and not blank where it must not be
        problem, whole = _verdict(type_name, value, required)
        if problem == "blank" and creating:
            return refuse(REQUIRED, name, f"{name} is required to create a task")
        if problem == "blank":
            return refuse(DOES_NOT_VALIDATE, name, f"{name} cannot be emptied")
        if problem:
            return refuse(DOES_NOT_VALIDATE, name, f"{name}: {problem}")
        if type_name in ("integer", "status"):
            params[name] = whole  # "12" is the whole number 12
    if not creating and len(params) == 1:
        return refuse(NOTHING_TO_UPDATE, "id", "an update must change something besides the id")

    existing = None
    if directory is not None and not creating:
        existing = directory.task(params["id"])
        if existing is None:
            return refuse(NO_TASK, "id", f"task {params['id']} does not exist in iVvy")
    if "leadId" in params and ("contactId" in params or "companyId" in params):
        other = "contactId" if "contactId" in params else "companyId"
        return refuse(
            24396, other, "a task belongs to one parent: a lead, or a contact and/or a company"
        )
    kind = None
    if directory is not None:
        if "leadId" in params:
            kind = directory.lead_kind(params["leadId"])
            if kind is None:
                return refuse(24389, "leadId", f"lead or opportunity {params['leadId']} "
                              "does not exist in iVvy")  # fmt: skip
        for name, code, what in (("contactId", 24390, "contact"), ("companyId", 24391, "company")):
            if name in params and not directory.has(what, params[name]):
                return refuse(code, name, f"{what} {params[name]} does not exist in iVvy")
        for name, what in (("venueId", "venue"), ("assignedUserId", "user")):
            if name in params and not directory.has(what, params[name]):
                return refuse(INVALID_DATA, name, f"{what} {params[name]} does not exist in iVvy")
    if kind == "opportunity" and "venueId" not in params:
        venue = existing.get("venueId") if existing else None
        if venue is None and default_venue is not None:
            params["venueId"] = default_venue
            result.warnings.append(f"venueId {default_venue} (--venue-id) used for the opportunity")
        elif venue is None:
            return refuse(REQUIRED, "venueId", "an opportunity's task needs a venueId "
                          "(give the column, or --venue-id)")  # fmt: skip
    if kind == "opportunity" and directory is not None:
        own = directory.opportunity_venue(params["leadId"])
        venue = params.get("venueId", existing.get("venueId") if existing else None)
        if own is not None and venue is not None and int(venue) != own:
            # iVvy refuses it as an invalid leadId: an opportunity belongs to its own venue.
            said = f"opportunity {params['leadId']} belongs to venue {own}, not venue {venue}"
            return refuse(INVALID_DATA, "leadId", said)
    if "contactId" in params and "companyId" in params:
        result.warnings.append(
            "contact and company: iVvy adds the contact to the company and files the task under "
            "the company"
        )
    return result


_WHOLE = re.compile(r"\s*\d+\s*")
#: Each field's name, kind and whether a create needs it, in the reference's order.
_SPECS = tuple((spec.name, spec.type, spec.required_on_create) for spec in TASK_FIELDS)
#: The verdicts on values already judged (ids, statuses, priorities and due times repeat down
#: a file), by kind, the value's type (``True == 1``, but True is no whole number) and value.
_VERDICTS: dict[tuple[str, type, Any, bool], tuple[str | None, int | None]] = {}


_KINDS = {name: (type_name, required) for name, type_name, required in _SPECS}
#: Each field's verdicts on the ints and texts judged already, by value.
_JUDGED: dict[str, dict[Any, tuple[str | None, int | None]]] = {name: {} for name in _KINDS}


def _well_typed(params: Mapping[str, Any], creating: bool) -> dict[str, Any] | None:
    """``params`` with the whole numbers made so, when every field is present with a value of
    its kind and nothing a create needs is missing (most rows: one pass over what is given);
    None when anything is amiss (then each field is checked in the reference's order, and the
    first problem is the one the API would report)."""
    typed = {}
    for name, value in params.items():
        spec = _KINDS.get(name)
        if spec is None:
            typed[name] = value  # not an API field: left for the caller
            continue
        type_name, required = spec
        if type_name == "string" and value.__class__ is str and (not required or value.strip()):
            typed[name] = value
            continue
        cls = value.__class__
        known = _JUDGED[name].get(value) if cls is int or cls is str else None
        if known is None:  # not judged yet (or a value of another type: True == 1)
            if value is None or value == "":
                return None
            known = _verdict(type_name, value, required)
            if cls is int or cls is str:
                judged = _JUDGED[name]
                if len(judged) >= 20_000:
                    judged.clear()
                judged[value] = known
        if known[0] is not None:
            return None
        typed[name] = known[1] if type_name in ("integer", "status") else value
    if creating and not typed.keys() >= REQUIRED_ON_CREATE:
        return None
    return typed


def _verdict(kind: str, value: Any, required: bool) -> tuple[str | None, int | None]:
    """``_type_problem`` of the value, and the value as a whole number (for the integer kinds),
    each distinct value judged once."""
    try:
        key = (kind, value.__class__, value, required)
        known = _VERDICTS.get(key)
    except TypeError:  # an unhashable value: judged each time
        return _type_problem(kind, value, required), _whole(value)
    if known is None:
        if len(_VERDICTS) >= 100_000:
            _VERDICTS.clear()
        known = _VERDICTS[key] = (_type_problem(kind, value, required), _whole(value))
    return known


def _whole(value: Any) -> int | None:
    """A whole number as the API takes one: an integer, or text of digits ("12")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value)
    return None


@functools.lru_cache(maxsize=65536)
def _is_timestamp(value: str) -> bool:
    """Whether ``value`` is a real moment written as the API's timestamp (a file's due dates
    repeat: each distinct one is parsed once)."""
    if _TIMESTAMP.fullmatch(value) is None:
        return False
    try:  # the pattern matched: the digits are where the API's format has them
        datetime(int(value[:4]), int(value[5:7]), int(value[8:10]),
                 int(value[11:13]), int(value[14:16]), int(value[17:19]))  # fmt: skip
    except ValueError:
        return False
    return True


_API_TEXT = methodcaller("isoformat", " ", "seconds")
_NINETEEN = (19).__eq__


def _are_timestamps(values: list[str]) -> list[bool]:
    """:func:`_is_timestamp` of each of ``values``, a column at a time: a text that reads as a
    moment and is written back the same (``YYYY-MM-DD HH:MM:SS``, digits of ASCII) is one;
    any other is judged by itself."""
    try:
        made = list(map(_API_TEXT, map(datetime.fromisoformat, values)))
    except ValueError:
        return list(map(_is_timestamp, values))
    # (Written back the same, and of the format's 19 characters: no offset after it.)
    verdicts = list(map(and_, map(eq, made, values), map(_NINETEEN, map(len, values))))
    for i in compress(count_from(), map(not_, verdicts)):
        verdicts[i] = _is_timestamp(values[i])
    return verdicts


def _type_problem(kind: str, value: Any, required: bool) -> str | None:
    """Why ``value`` is not a valid value of its kind (None when it is; "blank" when a text that
    creates need is blank)."""
    if kind in ("integer", "status"):
        number = _whole(value)
        if number is None:
            return "must be a whole number"
        if kind == "status" and number not in STATUSES:
            return f"must be one of {', '.join(map(str, STATUSES))}"
        return None if kind == "status" or number >= 1 else "must be greater than 0"
    if not isinstance(value, str):
        return "must be text"
    if kind == "priority":
        return None if value in PRIORITIES else f"must be one of {', '.join(PRIORITIES)}"
    if kind == "timestamp":
        return None if _is_timestamp(value) else "must be a timestamp YYYY-MM-DD HH:MM:SS (UTC)"
    if required and not value.strip():
        return "blank"
    return None


#: Whether a value needs no more than :func:`check_params` gives it, by field and value: of its
#: kind already (a whole number an int), and valid.
_PLAIN: dict[str, dict[Any, bool]] = {name: {} for name in _KINDS}
_PLAIN_KINDS = frozenset({int, str, type(None)})
#: The fields a row's other fields are counted from, for an update that must change something.
_PARENTS_OF_ONE = ("leadId", "contactId", "companyId")


def _plain(kind: str, required: bool, value: Any) -> bool:
    """Whether ``value`` (a normalised cell: None or "" when blank) passes as it is."""
    if value is None or value == "":
        return True  # absent (a create's required fields are looked at apart)
    cls = value.__class__
    if kind == "integer":
        return cls is int and value >= 1
    if kind == "status":
        return cls is int and value in STATUSES
    if cls is not str:
        return False
    if kind == "priority":
        return value in PRIORITIES
    if kind == "timestamp":
        return _is_timestamp(value)
    return not required or bool(value.strip())


def filled(values: Sequence[Any]) -> list[bool]:
    """Which values are given (neither None nor "": a payload leaves those out)."""
    return list(map(and_, map(is_not, values, repeat(None)), map(ne, values, repeat(""))))


def plain_rows(columns: Mapping[str, Sequence[Any]], count: int) -> list[bool]:
    """Which of ``count`` rows :func:`check_params` passes offline exactly as they are, with no
    warning, given their normalised values by field (None or "" where blank): every value of its
    kind and valid, a create with what it needs, an update with something to change, one
    parent. The rules are the same as check_params' (a differential test holds them together),
    applied a column at a time, each distinct value judged once. A row marked False is left to
    check_params: it may pass all the same (a "12" given as text), or not."""
    checks: list[Sequence[bool]] = []  # each a condition, left out where every row meets it
    for name, values in columns.items():
        kind, required = _KINDS[name]
        kinds = set(map(type, values))
        if kind == "string" and kinds <= {str}:  # text: blank, or (where required) not spaces
            if required and any(map(str.isspace, values)):
                checks.append(list(map(not_, map(str.isspace, values))))
            continue
        if all(k in _PLAIN_KINDS or issubclass(k, Exception) for k in kinds):
            # Ints and texts as keys (they never collide; a cell that could not be read is an
            # error, never plain, and not remembered).
            judged = _PLAIN[name]
            if len(judged) >= 200_000:
                judged.clear()
            good: list[Any] = list(map(judged.get, values))
            misses: Any = compress(count_from(), map(is_, good, repeat(None)))
            if kind == "timestamp" and (misses := list(misses)):
                # The texts among the misses judged at once; the rest (an error, a blank) below.
                texts = [values[i] for i in misses if values[i].__class__ is str and values[i]]
                judged.update(zip(texts, _are_timestamps(texts), strict=True))
                good = list(map(judged.get, values))
                misses = compress(count_from(), map(is_, good, repeat(None)))
            for i in misses:
                value = values[i]
                good[i] = verdict = _plain(kind, required, value)
                if value.__class__ in _PLAIN_KINDS:
                    judged[value] = verdict
        else:  # True == 1 as a key: each cell judged by itself
            good = [_plain(kind, required, v) for v in values]
        if not all(good):
            checks.append(good)

    def given(name: str) -> list[bool] | None:
        values = columns.get(name)
        return None if values is None else filled(values)

    updating = given("id")
    creating = list(map(not_, updating)) if updating is not None else None
    # A create needs each required field (texts and timestamps: given where true).
    needs = [columns.get(name) for name in sorted(REQUIRED_ON_CREATE)]
    have = (
        list(map(all, zip(*needs, strict=True)))
        if all(n is not None for n in needs)
        else [False] * count
    )
    if creating is not None:
        have = list(map(or_, updating, have))  # type: ignore[arg-type]
    if not all(have):
        checks.append(have)
    if updating is not None and any(updating):  # an update must change something
        others = [filled(values) for name, values in columns.items() if name != "id"]
        changes = list(map(any, zip(*others, strict=True))) if others else [False] * count
        checks.append(list(map(or_, creating, changes)))  # type: ignore[arg-type]
    lead, contact, company = map(given, _PARENTS_OF_ONE)
    # One parent (a lead, or a contact and/or a company); both a contact and a company are
    # fine, with a warning: left to check_params.
    if lead is not None and (contact is not None or company is not None):
        either = contact if company is None else company if contact is None else None
        if either is None:
            either = list(map(or_, contact, company))  # type: ignore[arg-type]
        checks.append(list(map(not_, map(and_, lead, either))))
    if contact is not None and company is not None:
        checks.append(list(map(not_, map(and_, contact, company))))
    if not checks:
        return [True] * count
    if len(checks) == 1:
        return list(checks[0])
    return list(map(all, zip(*checks, strict=True)))


def resolve_emails(params: dict[str, Any], directory: Directory | None) -> Finding | None:
    """Turn e-mails given for the assigned user or the contact into their ids (in place); the
    finding that stops the row when one cannot be resolved."""
    for name, find, what in (
        ("assignedUserId", "user_by_email", "user"),
        ("contactId", "contact_by_email", "contact"),
    ):
        value = params.get(name)
        if not isinstance(value, Email):
            continue
        if directory is None:
            return Finding(UNRESOLVED, name, f"{value} is an e-mail: finding the {what} needs a "
                           "connection to iVvy (credentials, or --sandbox)")  # fmt: skip
        matches = getattr(directory, find)(str(value))
        if not matches:
            return Finding(DOES_NOT_VALIDATE, name, f"no {what} in iVvy has the e-mail {value}")
        if len(matches) > 1:
            ids = ", ".join(map(str, sorted(matches)))
            said = f"{len(matches)} {what}s have the e-mail {value} (ids {ids}): give the id"
            return Finding(DOES_NOT_VALIDATE, name, said)
        params[name] = matches[0]
    return None


def validate(
    payload: Payload,
    directory: Directory | None = None,
    *,
    default_venue: int | None = None,
) -> Payload | Outcome:
    """The payload ready to send (warnings added), or the ``invalid`` outcome that stops it."""
    params = payload.params
    finding = None
    if isinstance(params.get("assignedUserId"), Email) or isinstance(
        params.get("contactId"), Email
    ):
        params = dict(params)  # resolved in place
        finding = resolve_emails(params, directory)
    checked = None
    if finding is None:
        checked = check_params(params, directory, default_venue=default_venue)
        finding = checked.error
    if finding is not None:
        column = payload.columns.get(finding.parameter or "", finding.parameter)
        return Outcome(
            "invalid",
            error_code=finding.code,
            field=column,
            message=finding.message,
            warnings=payload.warnings,
        )
    assert checked is not None
    warnings = payload.warnings + tuple(checked.warnings) if checked.warnings else payload.warnings
    return Payload(payload.row, checked.params, payload.columns, warnings)


__all__ = ["Checked", "Directory", "Email", "Finding", "check_params", "plain_rows", "validate"]
