"""Map: which source column feeds which task field.

This first version knows the API's own field names, matched without regard to case. Columns it
does not know are kept (they go to the results sheet) and fed to no field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .fields import TASK_FIELDS


@dataclass(frozen=True)
class ColumnMapping:
    """``field → column`` for the fields the source provides, and the columns left unused."""

    columns: dict[str, str]
    unused: tuple[str, ...]


def map_columns(headers: Sequence[str], *, path: str | Path, sheet: str | None) -> ColumnMapping:
    """The mapping for ``headers``. A sheet that cannot create tasks (no ``id`` column and no
    column for a field every create needs) is refused with a :class:`SourceError` listing the
    headers seen."""
    by_key = {f.name.casefold(): f.name for f in TASK_FIELDS}
    columns: dict[str, str] = {}
    unused: list[str] = []
    for header in headers:
        name = by_key.get(header.strip().casefold())
        if name is None or name in columns:
            unused.append(header)
        else:
            columns[name] = header
    if "id" not in columns:
        missing = [f.name for f in TASK_FIELDS if f.required_on_create and f.name not in columns]
        if missing:
            raise SourceError(
                f"no column for {', '.join(missing)} (required to create tasks); "
                f"the headers are: {', '.join(headers)}",
                path=path,
                sheet=sheet,
                column=missing[0],
            )
    return ColumnMapping(columns=columns, unused=tuple(unused))
