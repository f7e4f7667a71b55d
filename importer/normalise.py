"""Normalise: raw cells → typed API values, or the reason a cell cannot become one.

This first version: integers from ``"1234"``, ``1234`` and ``1234.0``; status as 0–4 or its
label; priority words in any case; due dates as ``YYYY-MM-DD HH:MM[:SS]`` (or ``T`` between), or a
date alone (midnight), taken as UTC. Text is sent as written.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .fields import FIELDS_BY_NAME, PRIORITIES, STATUSES, TIMESTAMP_FORMAT
from .map import ColumnMapping
from .model import Outcome, Payload, Row

_INTEGER = re.compile(r"\d+(\.0*)?")
_STATUS_BY_LABEL = {label.casefold(): code for code, label in STATUSES.items()}
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


class CellError(ValueError):
    """A cell that cannot become its field's value; ``code`` is a stable importer code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def normalise(row: Row, mapping: ColumnMapping) -> Payload | Outcome:
    """The row's payload, or an ``invalid`` outcome naming the first column that cannot be read."""
    params: dict[str, Any] = {}
    for name, column in mapping.columns.items():
        raw = row.cells.get(column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            params[name] = convert(name, raw)
        except CellError as exc:
            return Outcome("invalid", error_code=exc.code, field=column, message=str(exc))
    return Payload(row=row, params=params, columns=dict(mapping.columns))


def convert(name: str, raw: Any) -> Any:
    """The API value of field ``name`` from one raw cell; :class:`CellError` when impossible."""
    kind = FIELDS_BY_NAME[name].type
    text = str(raw).strip()
    if kind == "integer":
        return _integer(text)
    if kind == "status":
        code = _STATUS_BY_LABEL.get(text.casefold())
        if code is None:
            try:
                code = _integer(text)
            except CellError:
                code = -1
        if code not in STATUSES:
            accepted = ", ".join(f"{c} ({label})" for c, label in STATUSES.items())
            raise CellError("BAD_STATUS", f"unknown status {text!r}; accepted: {accepted}")
        return code
    if kind == "priority":
        word = text.casefold()
        if word not in PRIORITIES:
            raise CellError(
                "BAD_PRIORITY", f"unknown priority {text!r}; accepted: {', '.join(PRIORITIES)}"
            )
        return word
    if kind == "timestamp":
        return _timestamp(text)
    return raw if isinstance(raw, str) else text


def _integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise CellError("BAD_INTEGER", f"{text!r} is not a whole number")
    return int(text.split(".")[0])


def _timestamp(text: str) -> str:
    cleaned = text.removesuffix(" UTC").removesuffix("Z")
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).strftime(TIMESTAMP_FORMAT)
        except ValueError:
            continue
    raise CellError(
        "BAD_DATE", f"{text!r} is not a date; write YYYY-MM-DD HH:MM (UTC) or YYYY-MM-DD"
    )
