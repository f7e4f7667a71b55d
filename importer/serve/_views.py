"""What the page shows: messages without server paths or credentials, the mapping as a table and
as the mapping file a run takes, the verdicts of a check and the rows to fix (read through
the importer's own reader)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from .._xlsx import XlsxWriter
from ..client import Credentials
from ..errors import UsageError
from ..fields import PRIORITIES, STATUSES
from ..map import END_TIME, TARGETS, ColumnMapping, closest_field, toml_string
from ..options import RunOptions, parse_clock
from ..plan import CREATE, INVALID, KEPT, UNCHANGED, UPDATE, UPDATE_THEIRS
from ..prepare import open_mapped
from ..read import is_blank
from ..results import RESULT_COLUMNS, read_back, whole
from ._state import Upload

HOW = {
    "field name": "certain: the field's own name",
    "alias": "sure: a name the importer knows",
    "results sheet": "sure: the earlier results' task id",
}


#: The plan's lines, in the order the check page shows them.
PLAN_ORDER = (CREATE, UPDATE, UPDATE_THEIRS, UNCHANGED, INVALID, KEPT)


def for_the_page(message: str) -> str:
    """A refusal as the page says it: the page's own way on, not command-line options."""
    return message.split(" If the column holds")[0] + (
        " Choose “not imported” for that column on the Map step if it holds another system's "
        "ids, or tick the box below to update those tasks on purpose."
    )


def attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def content_type(path: Path) -> str:
    if path.suffix == ".csv":
        return "text/csv; charset=utf-8"
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


#: An absolute path in a message (a file, a folder, a journal), to be named by its last part.
_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"(),;]+)+/?")


#: The settings the Map step takes: name → what the page calls it.
SETTINGS = {
    "timezone": "time zone",
    "date_order": "date order",
    "default_time": "default time",
    "venue_id": "venue id",
    "key": "key column",
    "header_row": "header row",
}
_ORDERS = {"dmy": "day first", "mdy": "month first"}


def settings_options(settings: Mapping[str, str]) -> dict[str, Any]:
    """The run's options for the settings given on the page; UsageError naming the setting
    for a value it cannot take."""
    given = {k: v.strip() for k, v in settings.items() if k in SETTINGS and v.strip()}
    options: dict[str, Any] = {}
    if zone := given.get("timezone"):
        if zone != "venue" and zone not in available_timezones():
            raise UsageError(f"time zone: {zone!r} is not an IANA zone (such as Australia/Sydney)")
        options["timezone"] = zone
    if order := given.get("date_order"):
        if order not in _ORDERS:
            raise UsageError(f"date order: {order!r} is neither day first nor month first")
        options["date_order"] = order
    if clock := given.get("default_time"):
        options["default_time"] = parse_clock(clock)
    if venue := given.get("venue_id"):
        if not venue.isdigit() or int(venue) < 1:
            raise UsageError(f"venue id: {venue!r} is not a venue's id (a whole number)")
        options["venue_id"] = int(venue)
    if key := given.get("key"):
        options["key"] = key
    if row := given.get("header_row"):
        if not row.isdigit() or int(row) < 1:
            raise UsageError(f"header row: {row!r} is not a row's number (1 is the first row)")
        options["header_row"] = int(row)
    return options


#: Command-line options named in messages, as the page names what it offers instead.
_ON_MAP = "(Settings, on the Map step)"
_OPTION_WORDS = tuple(
    (re.compile(pattern), said)
    for pattern, said in (
        (r"--date-order dmy or (?:--date-order )?mdy",
         f"the date order, day first or month first {_ON_MAP}"),
        (r"--date-order dmy", f"the date order day first {_ON_MAP}"),
        (r"--date-order mdy", f"the date order month first {_ON_MAP}"),
        (r"--date-order for ([\w/-]+) dates", f"the date order for \\1 dates {_ON_MAP}"),
        (r"--date-order\b", f"the date order {_ON_MAP}"),
        (r"--timezone(?: [\w/+-]+)?", f"the time zone {_ON_MAP}"),
        (r"--default-time(?: [\d:HM]+)?", f"the default time {_ON_MAP}"),
        (r"--venue-id(?: (?:\d+|N))?", f"the venue id {_ON_MAP}"),
        (r"--key(?: (?:'[^']*'|\S+))?", f"the key column {_ON_MAP}"),
        (r"--encoding(?: [\w-]+)?(?: or --encoding [\w-]+)*",
         "another encoding (Read it in another encoding)"),
        (r"Rename a column, or give --mapping or --profile", "Choose below which column holds it."),
        (r"--mapping or --profile", "a column on the Map step"),
        (r"--update-existing", "the tick on the check step"),
        (r"--new-run", "Import it again"),
        (r"--resume", "Resume the import"),
    )
)  # fmt: skip


def page_words(text: str) -> str:
    """``text`` with the command-line options it names put as the page's own controls."""
    if "--" not in text:
        return text
    for pattern, said in _OPTION_WORDS:
        text = pattern.sub(said, text)
    return text


def scrubbed(text: str, upload: Upload | None, credentials: Credentials | None) -> str:
    """``text`` as a page may show it: the upload's own file by its name, any other path by
    its last part (no server folder, no other upload's folder: its id opens its pages), and
    nothing of the credentials."""
    if upload is not None:
        text = text.replace(str(upload.path), upload.name).replace(str(upload.folder), "")
    text = _PATH.sub(lambda m: Path(m.group(0)).name or "/", text)
    if credentials is not None:
        for secret, said in ((credentials.secret, "(the API secret)"),
                             (credentials.key, "(the API key)")):  # fmt: skip
            if secret:
                text = text.replace(secret, said)
    return text


def mapped_so_far(
    path: Path, options: RunOptions
) -> tuple[list[str], ColumnMapping, dict[str, list[str]], int]:
    """The source's own headers, what the mapper decides for them (even while a field every
    create needs has no column yet), each column's first distinct values (cells that are
    not blank, among the first rows), and the number of the row the headers are read from."""
    source, earlier, mapping = open_mapped(path, options, require=False)
    headers = source.headers[: -len(earlier)] if earlier else source.headers
    samples: dict[str, list[str]] = {h: [] for h in headers}
    for row in islice(source.rows(), 2000):
        for header in headers:
            value = row.cells.get(header)
            seen = samples[header]
            if len(seen) < _DISTINCT and not is_blank(value):
                text = str(whole(value)).strip()
                if text not in seen:
                    seen.append(text)
        if all(len(v) >= _DISTINCT for v in samples.values()):
            break
    return headers, mapping, samples, source.header_row


#: The distinct values of a column the Map step shows (the first two as its samples; all of
#: them for a priority or status column, to say how each is read).
_DISTINCT = 20


#: The fields as the page names them (the API's name is shown beside).
LABELS = {
    "id": "Task id (to update a task)",
    "venueId": "Venue id",
    "leadId": "Lead or opportunity id",
    "contactId": "Contact (id or e-mail)",
    "companyId": "Company id",
    "name": "Task name",
    "endDatetime": "Due date (and time)",
    "priority": "Priority",
    "assignedUserId": "Assigned user (id or e-mail)",
    "status": "Status",
    "description": "Description",
    END_TIME: "Due time (beside a due date)",
}


#: How alike a header and a known one must be for the Map step to choose the field for the
#: person (shown as a guess to check; a guess less sure is offered, not chosen).
CONFIDENT = 0.85


@dataclass(frozen=True)
class Guess:
    """A field an unmapped column's header looks like, and whether the Map step chooses it."""

    field: str
    chosen: bool


def describe_mapping(
    headers: list[str], mapping: ColumnMapping, choices: dict[str, str | None]
) -> list[tuple[str, str, str, Guess | None]]:
    """Each source column: the field it feeds ("" for none), how sure that is, and for a column
    that feeds none, the field its header looks like, when no other column feeds it (a
    "did you mean"): chosen in the page's form when it is close (the person saves it, or not),
    else offered beside. A guess is never part of the mapping until the person saves it."""
    field_of = {column: field for field, column in mapping.columns.items()}
    fed = set(mapping.columns) | {f for f in choices.values() if f}
    rows = []
    for header in headers:
        field = field_of.get(header, "")
        guess = None
        if not field and header not in choices:
            close = closest_field(header)
            if close is not None and close[0] not in fed and close[0] in TARGETS:
                guess = Guess(close[0], close[1] >= CONFIDENT)
                fed.add(close[0])  # one guess a field
        if field == "id" and mapping.how.get("id") != "results sheet":
            how = (
                "task ids of unknown origin: the check asks before any task this tool did not "
                "make would be updated"
            )
        elif header in choices:
            how = "your choice" if choices[header] else "your choice: not imported"
        elif field:
            reason = mapping.how.get(field, "")
            how = HOW.get(reason, f"sure: {reason}" if reason else "")
        elif guess is not None and guess.chosen:
            how = (f"a guess: the header looks like {LABELS.get(guess.field, guess.field)}'s; "
                   "check it, then save")  # fmt: skip
        elif guess is not None:
            how = f"not imported: did you mean {LABELS.get(guess.field, guess.field)}?"
        else:
            how = "not imported (kept in the results)"
        rows.append((header, field, how, guess))
    return rows


def mapping_toml(
    columns: dict[str, str | None],
    profile: str | None,
    values: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The mapping as the ``--mapping`` file that a nightly run can reuse (``values``: the
    words of the priority and status columns, read as the person said)."""
    lines = ["# Made by task-import serve: give it to a run with --mapping"]
    if profile:
        lines.append(f'profile = "{profile}"')
    lines += ["", "[columns]"]
    for column, field in columns.items():
        lines.append(f"{toml_string(column)} = {toml_string(field or 'ignore')}")
    for field, words in sorted((values or {}).items()):
        if words:
            lines += ["", f"[{field}]"]
            for word, value in words.items():
                said = value if field == "status" else toml_string(value)
                lines.append(f"{toml_string(word)} = {said}")
    return "\n".join(lines) + "\n"


#: What a word of each field may be read as on the page: value → how the page says it.
VALUE_CHOICES = {
    "priority": {p: p for p in PRIORITIES},
    "status": {str(code): f"{code} {label}" for code, label in STATUSES.items()},
}


def choosing(choices: Mapping[str, str | None]) -> dict[str, list[str]]:
    """The values a fix may choose from, by column, for the columns that feed the priority
    and the status: each as the importer reads it (a status by its name)."""
    values = {"priority": list(PRIORITIES), "status": list(STATUSES.values())}
    return {column: values[field] for column, field in choices.items() if field in values}


def value_words(form: Any) -> dict[str, dict[str, str]]:
    """The words of the priority and status columns the person said how to read (form fields
    ``value:FIELD:WORD``); UsageError for a value the field does not take."""
    words: dict[str, dict[str, str]] = {}
    for key, value in form.multi_items():
        if not key.startswith("value:") or not str(value):
            continue
        _, field, word = key.split(":", 2)
        if field not in VALUE_CHOICES or str(value) not in VALUE_CHOICES[field]:
            raise UsageError(f"{field} {word!r}: {str(value)!r} is not one of its values")
        words.setdefault(field, {})[word] = str(value)
    return words


def rows_to_fix(results: Path) -> bytes:
    """The rows of a results sheet that need a person, as an XLSX results sheet of their own
    (a source for ``run --only failed,invalid``)."""
    header, rows = read_back(results)
    result = len(header) - len(RESULT_COLUMNS) + RESULT_COLUMNS.index("result")
    buffer = io.BytesIO()
    out = XlsxWriter(buffer)  # every text an inline string: never a formula
    out.sheet("Results", frozen_header=True)
    out.header(header)
    out.rows([[whole(c) for c in row] for row in rows if row[result] in NEED_A_PERSON])
    out.close()
    return buffer.getvalue()


#: The results of rows that need a person (the rows to fix).
NEED_A_PERSON = ("invalid", "failed", "skipped")


@dataclass(frozen=True)
class Bar:
    """One bar of a chart on the page: its label, its number, and its length (0 to 1, of the
    longest bar)."""

    label: str
    n: int
    length: float


#: The colour of each result's bar (the page's own colours for them); others are blue.
BAR_COLOURS = {"created": "#2e7d32", "updated": "#2e7d32", "unchanged": "#5b6b7b",
               "invalid": "#c62828", "failed": "#c62828", "skipped": "#b26a00"}  # fmt: skip


def bars(counts: Mapping[str, int], *, most: int = 8) -> list[Bar]:
    """The counts as bars, the largest first (the ``most`` largest; the rest summed as
    "other")."""
    ordered = sorted(((str(k), n) for k, n in counts.items() if n), key=lambda kn: (-kn[1], kn[0]))
    if len(ordered) > most:
        ordered = [*ordered[: most - 1], ("other", sum(n for _, n in ordered[most - 1 :]))]
    longest = max((n for _, n in ordered), default=1)
    return [Bar(label, n, n / longest) for label, n in ordered]
