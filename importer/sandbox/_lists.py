"""Collections: pagination (``perPage``, ``start``) and filters (``field__SUFFIX: value``)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ._refusal import invalid

#: Servers cap perPage silently; the reference's examples show 100.
MAX_PER_PAGE = 100
NULL = "__ISNULL__"
# Longest first: "__NOTCONTAINS" must not be read as "__NOT".
SUFFIXES = (
    "__NOTCONTAINS",
    "__GREATERTHAN",
    "__LESSTHAN",
    "__CONTAINS",
    "__BEGINS",
    "__EMPTY",
    "__ENDS",
    "__NOT",
)


def collection(
    records: Iterable[Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    ignore_filters: bool = False,
) -> dict[str, Any]:
    """One page of ``records`` (already in id order) as iVvy's collection answer."""
    per_page = _whole(params, "perPage", MAX_PER_PAGE)
    start = _whole(params, "start", 0)
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    flt = params.get("filter") or {}
    if not isinstance(flt, Mapping):
        raise invalid("filter", "Value must be an object of field: value")
    if ignore_filters:
        flt = {}
    matching = [r for r in records if all(matches(r, k, v) for k, v in flt.items())]
    # Copies of the page only: callers may keep what they get without touching the store.
    page = copy.deepcopy(matching[start : start + per_page])
    return {
        "meta": {
            "totalResults": len(matching),
            "start": start,
            "perPage": per_page,
            "count": len(page),
        },
        "results": page,
    }


def _whole(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid(name, "Value must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise invalid(name, "Value must be a whole number")
    if number < 0:
        raise invalid(name, "Value must not be negative")
    return number


def matches(record: Mapping[str, Any], key: str, expected: Any) -> bool:
    """Whether ``record`` passes the filter ``key: expected``.

    A filter on a field the record does not have is ignored, as a server ignores filters it does
    not support; that is why clients check every record they get back.
    """
    field, op = key, ""
    for suffix in SUFFIXES:
        if key.endswith(suffix):
            field, op = key[: -len(suffix)], suffix
            break
    if field not in record:
        return True
    value = record[field]
    if op == "__EMPTY":
        is_empty = value is None or value == ""
        return is_empty if _truthy(expected) else not is_empty
    if expected == NULL:
        return (value is None) != (op == "__NOT")
    have, want = _text(value), _text(expected)
    if op == "":
        return have == want
    if op == "__NOT":
        return have != want
    if op == "__CONTAINS":
        return want in have
    if op == "__NOTCONTAINS":
        return want not in have
    if op == "__BEGINS":
        return have.startswith(want)
    if op == "__ENDS":
        return have.endswith(want)
    if value is None:
        return False
    a, b = _number(value), _number(expected)
    if a is not None and b is not None:
        return a <= b if op == "__LESSTHAN" else a >= b
    return have <= want if op == "__LESSTHAN" else have >= want


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value).strip()
    # Timestamps are listed with " UTC" and may be filtered without it.
    if text.endswith(" UTC"):
        text = text[:-4]
    return text.casefold()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes"}
