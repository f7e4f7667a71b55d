"""What a run may be told: :class:`RunOptions`, the command line's options as one frozen value."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .dates import DateOrder
from .errors import UsageError
from .journal import state_of
from .map import MappingFile
from .send import SendOptions

if TYPE_CHECKING:
    from .read import RowCache

VENUE_ZONE = "venue"
#: ``RunOptions(results=BESIDE)``: the results beside the source (the command line's choice).
BESIDE: Literal["beside"] = "beside"


@dataclass(frozen=True)
class RejectLimit:
    """How many rows may be rejected (``invalid`` or ``failed``) before a run counts as failed
    (exit 1): at most ``count`` rows, or at most ``share`` of them (0.05 for 5%)."""

    count: int | None = None
    share: float | None = None

    @classmethod
    def parse(cls, text: str | int | RejectLimit, option: str = "--max-rejects") -> RejectLimit:
        """``"25"`` (rows) or ``"2%"`` / ``"2.5%"`` (of the rows); UsageError otherwise."""
        if isinstance(text, RejectLimit):
            return text
        written = str(text).strip()
        try:
            if written.endswith("%"):
                share = float(written[:-1]) / 100
                if not 0 <= share <= 1:
                    raise ValueError
                return cls(share=share)
            count = int(written)
            if count < 0:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise UsageError(
                f"{option} takes a number of rows (25) or a share of them (2%), not {text!r}"
            ) from None

    def allows(self, rejects: int, rows: int) -> bool:
        """Whether ``rejects`` of ``rows`` are within the limit."""
        if self.count is not None:
            return rejects <= self.count
        return rows > 0 and rejects <= (self.share or 0.0) * rows

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{(self.share or 0) * 100:g}%"


#: What a keyed run does with the keys of earlier exports that this one no longer holds.
Missing = Literal["ignore", "report", "cancel"]


def _missing(value: str) -> Missing:
    if value not in ("ignore", "report", "cancel"):
        raise UsageError(f"--missing is ignore, report or cancel, not {value!r}")
    return value  # type: ignore[return-value]


#: What an update does with a blank cell: leaves the field as iVvy holds it, or clears it.
Blanks = Literal["keep", "clear"]


def _blanks(value: str) -> Blanks:
    if value not in ("keep", "clear"):
        raise UsageError(f"--blanks is keep or clear, not {value!r}")
    return value  # type: ignore[return-value]


def _share(value: float | str, option: str) -> float:
    """A share given as 0.2 or "20%"; UsageError unless between 0 and 1."""
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise UsageError(f"{option} is a share such as 20% or 0.2, not {value!r}")
    return share


def _path(value: Any) -> Any:
    """A path given as text, as a :class:`Path` (anything else as it is)."""
    if isinstance(value, str | os.PathLike) and not isinstance(value, Path):
        return Path(value)
    return value


@dataclass(frozen=True)
class SourceOptions:
    """How the source is read: the workbook ``sheet`` (a name or a position from 1), the text
    ``encoding``, a legacy CRM's ``profile``, a ``mapping`` file (its path, or its value from
    :func:`~importer.map.load_mapping_file`), cells a person corrected (``fixes``: (row
    number, column) → the value to read instead; the file itself is never changed), and
    ``columns`` mapped one by one (``{"Finish": "endDatetime"}``: over the mapping file's)."""

    sheet: str | None = None
    encoding: str | None = None
    profile: str | None = None
    mapping: Path | MappingFile | None = None
    fixes: Mapping[tuple[int, str], Any] | None = None
    #: Columns mapped one by one (column → field, or ``"ignore"``), on top of the mapping file.
    columns: Mapping[str, str] | None = None
    #: The header row's number in the sheet (from 1), when the importer should not find it.
    header_row: int | None = None
    #: Where a check of every row keeps the rows it read, so that a check of a few of them
    #: (``validate_source(numbers=...)``, after a correction) reads them from memory, not the
    #: file: see :class:`~importer.read.RowCache`. Give the same one to each check of a file.
    row_cache: RowCache | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping", _path(self.mapping))


@dataclass(frozen=True)
class DateOptions:
    """How dates are read (each ``None``: the mapping file's, else the profile's, else the
    default): ``timezone``, the IANA zone of the sheet's times (default UTC), or ``"venue"``
    for the zone of the run's venue; ``date_order``, ``dmy`` or ``mdy`` for dates like
    03/04/2026; ``default_time``, the time given to dates without one (09:00);
    ``default_timezone``, the zone of a sheet that says nothing of its own (a configuration's
    default): a profile whose export writes its times in a known zone (Pipedrive's, in UTC)
    wins over it, where ``timezone`` wins over the profile."""

    timezone: str | None = None
    date_order: DateOrder | None = None
    default_time: clock_time | None = None
    default_timezone: str | None = None


@dataclass(frozen=True)
class JournalOptions:
    """The journal: its file (``state``; default one per target under the user's data folder),
    and which run this is: ``resume`` goes on with this source's stopped run, ``new_run``
    begins a new one through every row although the source was imported before;
    ``trust_empty``: a keyed run may begin with a journal that knows no keys although the
    account holds tasks like the first rows."""

    state: Path | str | None = None
    resume: bool = False
    new_run: bool = False
    #: A keyed run into a target whose journal knows no keys, while the account holds tasks
    #: like its first rows, is refused (the journal was lost?) unless this is set.
    trust_empty: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", state_of(self.state))


_GROUPS: dict[str, Any] = {
    "source": SourceOptions,
    "dates": DateOptions,
    "send": SendOptions,
    "journal": JournalOptions,
}
#: Each group's fields, by name: what a flat keyword given to :class:`RunOptions` sets.
_FLAT = {name: group for group, kind in _GROUPS.items() for name in kind.__dataclass_fields__}


@dataclass(frozen=True, init=False)
class RunOptions:
    """What a run may be told, in small frozen values: how the source is read
    (:class:`SourceOptions`), how its dates are (:class:`DateOptions`), how rows are sent
    (:class:`~importer.send.SendOptions`), the journal (:class:`JournalOptions`), and the
    run's own: where its ``results`` go (none unless given, for the library; ``"beside"``
    the source, as the command line writes them: ``NAME.results.xlsx|csv``), the ``key``
    column that identifies a row (a value twice is refused), the default ``venue_id``, ``only``
    (for a results sheet read back: the earlier results whose rows are sent again),
    ``all_or_nothing`` (nothing sent while any row is invalid), and ``update_existing``
    (whether rows may update tasks this tool did not make: ``None`` when a mapping file that
    names the id column says so, ``False`` never, ``True`` always), and ``max_rejects`` (rows
    ``invalid`` or ``failed`` that still let the run count as done: ``"25"`` or ``"2%"``; every
    valid row is sent either way), ``max_changes`` (the most rows that may update a task, as a
    number or a share, checked by a plan before anything is sent; cancels count too),
    ``notify`` (a webhook's URL: told when the run needs attention, and once when a later run
    recovers), ``missing`` (for a keyed run: the keys earlier exports held that this one does
    not are ``"report"``-ed in the results, ``"cancel"``-led, their tasks set to Cancelled, or
    ``"ignore"``-d), ``max_shrink`` (a source that holds this share fewer rows than the last
    keyed run's, or none, cancels nothing and ends with exit 1), and ``overwrite_edits`` (send
    an update although the task was changed in iVvy since this tool last wrote it: by default
    such a row ends ``conflict``, not sent), and ``blanks`` (``"clear"``: an update whose
    description cell is blank clears the task's description, checked by reading it back; by
    default, ``"keep"``, a blank cell leaves the field as it is).

    Each group's fields may also be given by name, as the command line's options are:
    ``RunOptions(key="Task ID", concurrency=16, timezone="Australia/Sydney")``; each is then
    held once, in its group (``options.send.concurrency``).
    """

    source: SourceOptions
    dates: DateOptions
    send: SendOptions
    journal: JournalOptions
    results: Path | Literal["beside"] | None
    key: str | None
    venue_id: int | None
    only: frozenset[str] | None
    all_or_nothing: bool
    update_existing: bool | None
    max_rejects: RejectLimit | None
    max_changes: RejectLimit | None
    notify: str | None
    missing: Missing
    max_shrink: float
    overwrite_edits: bool
    blanks: Blanks

    def __init__(
        self,
        *,
        source: SourceOptions | None = None,
        dates: DateOptions | None = None,
        send: SendOptions | None = None,
        journal: JournalOptions | None = None,
        results: str | os.PathLike[str] | None = None,
        key: str | None = None,
        venue_id: int | None = None,
        only: frozenset[str] | None = None,
        all_or_nothing: bool = False,
        update_existing: bool | None = None,
        max_rejects: str | int | RejectLimit | None = None,
        notify: str | None = None,
        max_changes: str | int | RejectLimit | None = None,
        missing: Missing = "report",
        max_shrink: float | str = 0.2,
        overwrite_edits: bool = False,
        blanks: Blanks = "keep",
        **flat: Any,
    ) -> None:
        groups: dict[str, Any] = {
            "source": source or SourceOptions(),
            "dates": dates or DateOptions(),
            "send": send or SendOptions(),
            "journal": journal or JournalOptions(),
        }
        given: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            if name not in _FLAT:
                raise TypeError(f"RunOptions has no option {name!r}")
            given.setdefault(_FLAT[name], {})[name] = value
        for group, values in given.items():
            groups[group] = dataclasses.replace(groups[group], **values)
        for name, value in groups.items():
            object.__setattr__(self, name, value)
        where = results if results == BESIDE else _path(results)
        limit = None if max_rejects is None else RejectLimit.parse(max_rejects)
        own = {"results": where, "key": key, "venue_id": venue_id, "only": only,
               "all_or_nothing": all_or_nothing, "update_existing": update_existing,
               "max_rejects": limit, "notify": notify,
               "max_changes": None if max_changes is None
               else RejectLimit.parse(max_changes, "--max-changes"),
               "missing": _missing(missing), "max_shrink": _share(max_shrink, "--max-shrink"),
               "overwrite_edits": overwrite_edits, "blanks": _blanks(blanks)}  # fmt: skip
        for name, value in own.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> RunOptions:
        """These options with ``changes`` (by name, flat or a whole group)."""
        own = {f: getattr(self, f) for f in self.__dataclass_fields__}
        flat = {k: v for k, v in changes.items() if k in _FLAT}
        own.update({k: v for k, v in changes.items() if k not in _FLAT})
        return RunOptions(**own, **flat)

    def flat(self) -> dict[str, Any]:
        """Every option by its own name (the groups' fields and the run's), as the journal
        keeps a run's options."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in _GROUPS}
        for group in _GROUPS:
            held = getattr(self, group)
            values.update({f: getattr(held, f) for f in held.__dataclass_fields__})
        return values


def parse_clock(text: str) -> clock_time:
    """``HH:MM`` as a time of day; UsageError otherwise."""
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise UsageError(f"a time of day is written HH:MM (24-hour), not {text!r}") from None


#: The options of a call that gives none (a frozen value: safe to share as a default).
DEFAULTS = RunOptions()
