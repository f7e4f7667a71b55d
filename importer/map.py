"""Map: which source column feeds which task field.

In order of precedence: a mapping file (``--mapping``, TOML), a built-in profile (``--profile``),
the API's own field names, then known aliases ("Task Name", "Due Date", "Assigned To"…); names are
compared without case, spaces or punctuation. Columns that feed no field are kept (they go to the
results sheet) and reported, with the closest field when one is close. The mapping also carries
the status and priority words to accept, so that normalise never guesses.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SourceError, UsageError
from .fields import (
    PRIORITIES,
    PRIORITY_SYNONYMS,
    STATUS_SYNONYMS,
    STATUSES,
    TASK_FIELDS,
)
from .profiles import PROFILES, Profile

#: A time-of-day column joined to the due date (Pipedrive's "Due time").
END_TIME = "endTime"
TARGETS: tuple[str, ...] = (*(f.name for f in TASK_FIELDS), END_TIME)
IGNORE = frozenset({"", "ignore", "-"})

ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("Task ID", "iVvy Task ID", "iVvy ID"),
    "name": ("Task Name", "Task", "Subject", "Title", "Task Title", "Task Subject"),
    "endDatetime": ("Due Date", "Due", "Deadline", "Due Date Time", "Due Date and Time",
                    "Due On", "Due By", "End Date", "End Datetime", "End Date Time"),
    "endTime": ("Due Time", "Time Due", "End Time"),
    "priority": ("Task Priority", "Importance"),
    "status": ("Task Status", "State"),
    "description": ("Notes", "Note", "Details", "Body", "Comments", "Task Description"),
    "contactId": ("Contact ID", "Contact Id", "iVvy Contact ID", "contactEmail", "Contact Email",
                  "Contact E-mail"),
    "companyId": ("Company ID", "iVvy Company ID"),
    "leadId": ("Lead ID", "Opportunity ID", "Lead or Opportunity ID"),
    "venueId": ("Venue ID",),
    "assignedUserId": ("Assigned To", "Assigned User", "Assigned User ID", "Assignee", "Owner",
                       "User ID", "Assigned To ID", "Assigned To Email", "Owner Email",
                       "Assignee Email", "User Email"),
}  # fmt: skip


def canon(text: str) -> str:
    """A name or a word compared without case, spaces or punctuation: "Due Date" → "duedate"."""
    return re.sub(r"[\W_]+", "", str(text)).casefold()


_TARGET_BY_CANON: dict[str, str] = {canon(n): n for n in TARGETS}
_KNOWN: dict[str, str] = dict(_TARGET_BY_CANON)
for _field, _names in ALIASES.items():
    _KNOWN.update({canon(n): _field for n in _names})


@dataclass(frozen=True)
class MappingFile:
    """What a ``--mapping`` TOML file says."""

    path: Path
    profile: str | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    status: dict[str, int | None] = field(default_factory=dict)
    priority: dict[str, str | None] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def said_by(self) -> str:
        """How a message names it: the file, or ``--column`` for columns given one by one."""
        return "--column" if self.path == GIVEN_COLUMNS else f"mapping file {self.path.name}"


#: The "path" of the columns given one by one (``--column 'Finish=endDatetime'``).
GIVEN_COLUMNS = Path("--column")


def field_of(target: str, said: str) -> str | None:
    """The field a mapping names (``None`` for ``ignore``); UsageError, after ``said`` (where
    it was said), for a name that is no field."""
    if target.strip().lower() in IGNORE:
        return None
    resolved = _TARGET_BY_CANON.get(canon(target))
    if resolved is None:
        raise UsageError(
            f'{said}: unknown field; the fields are {", ".join(TARGETS)} (or "ignore")'
        )
    return resolved


def given_columns(pairs: Mapping[str, str], mapping_file: MappingFile | None) -> MappingFile:
    """A mapping file's columns with ``pairs`` (column → field, or ``ignore``) given one by
    one on top (they win); UsageError for an unknown field."""
    columns: dict[str, str | None] = dict(mapping_file.columns) if mapping_file else {}
    for column, target in pairs.items():
        columns[column] = field_of(target, f"--column {column}={target}")
    if mapping_file is None:
        return MappingFile(path=GIVEN_COLUMNS, columns=columns)
    return dataclasses.replace(mapping_file, columns=columns)


@dataclass(frozen=True)
class ColumnMapping:
    """``field → column`` for the fields the source provides, how each was decided, the columns
    left unused, warnings for a person, and the words normalise accepts."""

    columns: dict[str, str]
    how: dict[str, str] = field(default_factory=dict)
    unused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    status_words: dict[str, int | None] = field(default_factory=dict)
    priority_words: dict[str, str | None] = field(default_factory=dict)
    suggested_key: str | None = None
    timezone: str | None = None
    epoch_ms: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def column_of(self, name: str) -> str:
        """The source column that feeds ``name`` (the field name itself when none does)."""
        return self.columns.get(name, name)


def default_status_words() -> dict[str, int | None]:
    words: dict[str, int | None] = {canon(label): code for code, label in STATUSES.items()}
    for code, names in STATUS_SYNONYMS.items():
        words.update({canon(n): code for n in names})
    return words


def default_priority_words() -> dict[str, str | None]:
    words: dict[str, str | None] = {p: p for p in PRIORITIES}
    for priority, names in PRIORITY_SYNONYMS.items():
        words.update({canon(n): priority for n in names})
    return words


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, for the mapping files this project writes."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def load_mapping_file(path: str | Path) -> MappingFile:
    """Read and check a mapping file; UsageError naming the file and the entry at fault."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise UsageError(f"cannot read the mapping file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"mapping file {path}: not valid TOML ({exc})") from None
    known = {"profile", "columns", "status", "priority", "options"}
    if unknown := set(data) - known:
        raise UsageError(
            f"mapping file {path}: unknown entries {sorted(unknown)}; "
            f"expected {', '.join(sorted(known))}"
        )
    profile = data.get("profile")
    if profile is not None and profile not in PROFILES:
        raise UsageError(
            f"mapping file {path}: unknown profile {profile!r}; choose {', '.join(PROFILES)}"
        )
    columns: dict[str, str | None] = {}
    for column, target in _table(data, "columns", path).items():
        if not isinstance(target, str):
            raise UsageError(f"mapping file {path}: [columns] {column!r} must be a field name")
        columns[column] = field_of(
            target, f"mapping file {path}: [columns] {column!r} = {target!r}"
        )
    status = {
        word: _status_value(value, path, word)
        for word, value in _table(data, "status", path).items()
    }
    priority = {
        word: _priority_value(value, path, word)
        for word, value in _table(data, "priority", path).items()
    }
    return MappingFile(
        path=path,
        profile=profile,
        columns=columns,
        status=status,
        priority=priority,
        options=_table(data, "options", path),
    )


def _table(data: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise UsageError(f"mapping file {path}: [{name}] must be a table")
    return table


def _status_value(value: Any, path: Path, word: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() in IGNORE:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in STATUSES:
        return value
    code = default_status_words().get(canon(value)) if isinstance(value, str) else None
    if code is None:
        accepted = ", ".join(f"{c} ({label})" for c, label in STATUSES.items())
        raise UsageError(f"mapping file {path}: [status] {word!r} = {value!r}: use {accepted}")
    return code


def _priority_value(value: Any, path: Path, word: str) -> str | None:
    text = str(value).strip().lower()
    if text in IGNORE:
        return None
    if text not in PRIORITIES:
        raise UsageError(
            f"mapping file {path}: [priority] {word!r} = {value!r}: use {', '.join(PRIORITIES)}"
        )
    return text


def map_columns(
    headers: Sequence[str],
    *,
    path: str | Path,
    sheet: str | None = None,
    profile: str | None = None,
    mapping_file: MappingFile | None = None,
    require: bool = True,
) -> ColumnMapping:
    """The mapping for ``headers``.

    A sheet that cannot create tasks (no ``id`` column and no column for a field every create
    needs) is refused with a :class:`SourceError` listing the headers seen, unless ``require`` is
    false (a page showing what is mapped so far); an unknown profile is a :class:`UsageError`.
    """
    chosen = profile or (mapping_file.profile if mapping_file else None)
    if chosen is not None and chosen not in PROFILES:
        raise UsageError(f"unknown profile {chosen!r}: choose {', '.join(PROFILES)}")
    prof: Profile | None = PROFILES[chosen] if chosen else None

    by_canon = {canon(h): h for h in reversed(headers)}  # first of equal names wins
    columns: dict[str, str] = {}
    how: dict[str, str] = {}
    warnings: list[str] = []
    taken: set[str] = set()

    def assign(target: str, header: str, reason: str) -> None:
        if header in taken:
            return
        if target in columns:
            warnings.append(
                f"column {header!r} also looks like {target}; {columns[target]!r} is used for it"
            )
            return
        columns[target] = header
        how[target] = reason
        taken.add(header)

    absent: list[tuple[str, str | None]] = []
    if mapping_file is not None:
        for column, target in mapping_file.columns.items():
            header = by_canon.get(canon(column))
            if header is None:
                absent.append((column, target))
            elif target is None:
                taken.add(header)  # left unused on purpose
            else:
                assign(target, header, mapping_file.said_by)
    if prof is not None:
        if prof.key and (key := by_canon.get(canon(prof.key))) is not None:
            taken.add(key)  # a legacy id: kept in the results, never sent as an iVvy id
        for column, target in prof.columns.items():
            header = by_canon.get(canon(column))
            if header is not None:
                assign(target, header, f"profile {prof.name}")
    for header in headers:
        target = _TARGET_BY_CANON.get(canon(header))
        # Another CRM's export: its ids are its own, never iVvy's task ids (only a mapping file
        # can say otherwise).
        if target is not None and not (prof is not None and target == "id"):
            assign(target, header, "field name")
    for header in headers:
        target = _KNOWN.get(canon(header))
        if target is not None and not (prof is not None and target == "id"):
            assign(target, header, "alias")

    typos: dict[str, list[str]] = {}  # by field: the mapping file's columns the source lacks
    for column, target in absent:  # an alternative for a field another column feeds is fine
        if target is None or target not in columns:
            hint = _closest_header(column, headers)
            who = "--column" if mapping_file and mapping_file.path == GIVEN_COLUMNS else None
            note = (
                f"{who or 'mapping file'} names column {column!r}"
                + (f" for {target}" if target else "")
                + ", which the source does not have"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
            warnings.append(note)
            typos.setdefault(target or "", []).append(note)
    unused = tuple(h for h in headers if h not in columns.values())
    ignored = taken - set(columns.values())
    legacy = {canon(c) for c in prof.legacy} if prof else set()
    system = prof.title.split(" (")[0] if prof else ""
    for header in unused:
        if header in ignored:
            continue
        if canon(header) in legacy:
            warnings.append(
                f"column {header!r} holds {system} ids, not iVvy ids: kept in the results; to "
                "set it in iVvy, map a column of iVvy ids with --mapping"
            )
            continue
        hint = _closest(header)
        warnings.append(
            f"column {header!r} is not imported (kept in the results)"
            + (f": did you mean {hint!r}?" if hint else "")
        )
    if END_TIME in columns and "endDatetime" not in columns:
        warnings.append(f"column {columns[END_TIME]!r} holds due times, but no column holds dates")

    if "id" not in columns and require:
        missing = [f.name for f in TASK_FIELDS if f.required_on_create and f.name not in columns]
        if missing:
            told = [n for f in missing for n in typos.get(f, [])]
            raise SourceError(
                "".join(f"{n}; " for n in told)
                + f"no column for {', '.join(missing)} (required to create tasks); the headers "
                f"are: {', '.join(repr(h) for h in headers)}. Rename a column, or give "
                "--column, --mapping or --profile",
                path=path,
                sheet=sheet,
                column=missing[0],
            )

    status_words = default_status_words()
    priority_words = default_priority_words()
    if prof is not None:
        status_words.update({canon(w): c for w, c in prof.status.items()})
        priority_words.update({canon(w): p for w, p in prof.priority.items()})
    options: dict[str, Any] = {}
    if mapping_file is not None:
        status_words.update({canon(w): c for w, c in mapping_file.status.items()})
        priority_words.update({canon(w): p for w, p in mapping_file.priority.items()})
        options = dict(mapping_file.options)
    suggested_key = None
    if prof is not None and prof.key:
        suggested_key = by_canon.get(canon(prof.key))
    return ColumnMapping(
        columns=columns,
        how=how,
        unused=unused,
        warnings=tuple(warnings),
        status_words=status_words,
        priority_words=priority_words,
        suggested_key=suggested_key,
        timezone=prof.timezone if prof else None,
        epoch_ms=prof.epoch_ms if prof else False,
        options=options,
    )


def _closest_header(column: str, headers: Sequence[str]) -> str | None:
    """The source's header that a mapping file's column most likely meant (a typo)."""
    by_canon = {canon(h): h for h in headers}
    match = difflib.get_close_matches(canon(column), list(by_canon), n=1, cutoff=0.6)
    return by_canon[match[0]] if match else None


def _closest(header: str) -> str | None:
    guess = closest_field(header)
    return guess[0] if guess else None


def closest_field(header: str) -> tuple[str, float] | None:
    """The field a header no alias names most likely means (a typo of a known header, such
    as "Due Dte"), with how alike the two are (0.75 to 1), or None."""
    wanted = canon(header)
    match = difflib.get_close_matches(wanted, list(_KNOWN), n=1, cutoff=0.75)
    if not match:
        return None
    return _KNOWN[match[0]], difflib.SequenceMatcher(None, wanted, match[0]).ratio()
