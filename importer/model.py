"""The small immutable values that flow through the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

Result = Literal[
    "created",
    "updated",
    "unchanged",
    "invalid",
    "failed",
    "skipped",
    "valid",
    "conflict",
    "missing",
    "cancelled",
]
#: Results that mean the row is done in iVvy (or, for ``validate``, would pass); anything else
#: needs a person.
SUCCESSFUL: frozenset[str] = frozenset({"created", "updated", "unchanged", "valid"})
#: A keyed run's lines for the keys of earlier exports that this one no longer holds (no row of
#: the source): told of (``missing``) or their tasks set to Cancelled (``cancelled``); neither
#: needs a person by itself.
VANISHED: frozenset[str] = frozenset({"missing", "cancelled"})


class Email(str):
    """An e-mail given where an id is expected (a user, a contact): resolved online."""


class Row(NamedTuple):
    """One source row: the row number a person sees in the source, and its raw cells by header.

    (Named tuples: a run makes one of these per row, and they are the cheapest immutable value.)
    """

    number: int
    cells: Mapping[str, Any]


class Payload(NamedTuple):
    """The API parameters built from one row; ``columns`` says which source column fed each."""

    row: Row
    params: Mapping[str, Any]
    columns: Mapping[str, str] = {}
    #: What a person should know about this row although it can be sent.
    warnings: tuple[str, ...] = ()

    @property
    def is_update(self) -> bool:
        return self.params.get("id") is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one row. ``error_code`` is iVvy's specific code where the API defines
    one, else a short stable importer code (``BAD_INTEGER``…); ``field`` names the source column."""

    result: Result
    task_id: int | None = None
    error_code: int | str | None = None
    field: str | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """How a run (or an undo) is going, as it goes: ``started`` once the rows to do are counted
    (``total``), ``row`` as each row's outcome is recorded (its ``number`` and ``outcome``), and
    ``finished`` at the end. ``done`` and ``failures`` (rows ``invalid`` or ``failed``) count
    the rows recorded so far; ``rate_limited`` the 429 answers so far."""

    kind: Literal["started", "row", "finished"]
    total: int
    done: int = 0
    failures: int = 0
    rate_limited: int = 0
    number: int | None = None
    outcome: Outcome | None = None


class RowResult(NamedTuple):
    """One row of a run's (or a check's) results: its number (0 for a line of no source row:
    a key an earlier export held that this one does not), its cells as the source has them,
    and what became of it."""

    number: int
    cells: Mapping[str, Any]
    outcome: Outcome
