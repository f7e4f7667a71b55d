"""Dates and times from spreadsheets → the API's UTC ``YYYY-MM-DD HH:MM:SS``.

Accepted: native date and datetime cells; Excel serial numbers in either date system; ISO 8601
(with or without ``T``, seconds, fractions, ``Z`` or an offset); ``DD/MM/YYYY`` and
``MM/DD/YYYY`` (``/``, ``-`` or ``.``, two- or four-digit years, optional time and AM/PM) with the
order decided from the whole column or given; ``1 Dec 2026`` and ``Dec 1, 2026``; epoch
milliseconds where a profile says so. A time without an offset is wall-clock time in the sheet's
zone and is converted with its daylight-saving rules: a time that does not exist there (the
spring-forward gap) is refused, one that occurs twice takes the first, with a warning. A date
without a time keeps its calendar day: it gets the default time of day in the sheet's zone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from itertools import compress, repeat
from operator import floordiv, is_, methodcaller, sub
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DateOrder = Literal["dmy", "mdy"]

_MERIDIEM = r"(?P<ap>[AaPp]\.?[Mm]\.?)?"
_ISO = re.compile(
    r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"
    r"(?:[T ]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,]\d+)?)?\s*" + _MERIDIEM + ")?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?"
)
_NUMERIC = re.compile(
    r"(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
    r"(?:[T ,]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*(?P<ap>[AaPp]\.?[Mm]\.?)?)?"
)
_MONTH_NAMES = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip
_TIME = r"(?:[T ,]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*(?P<ap>[AaPp]\.?[Mm]\.?)?)?"
_DAY_MONTH = re.compile(r"(?P<d>\d{1,2})[ -](?P<mon>[A-Za-z]{3,9})\.?[ -](?P<y>\d{4})" + _TIME)
_MONTH_DAY = re.compile(r"(?P<mon>[A-Za-z]{3,9})\.? (?P<d>\d{1,2})(?:st|nd|rd|th)?,? (?P<y>\d{4})"
                        + _TIME)  # fmt: skip
# A value whose first number can only be a day (> 12) and whose second can be a month, and the
# reverse, each a whole value of the column (one per line when the column is searched at once).
_DMY_WITNESS = re.compile(
    r"^[ \t]*(?:1[3-9]|[2-9]\d)([/.-])(?:0?[1-9]|1[0-2])\1(?:\d{4}|\d{2})(?:[T ,].*)?$", re.M
)
_MDY_WITNESS = re.compile(
    r"^[ \t]*(?:0?[1-9]|1[0-2])([/.-])(?:1[3-9]|[2-9]\d)\1(?:\d{4}|\d{2})(?:[T ,].*)?$", re.M
)
_CLOCK = re.compile(r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*(?P<ap>[AaPp]\.?[Mm]\.?)?")
_SERIAL = re.compile(r"\d{5,6}(?:\.\d+)?")
_SERIAL_LINE = re.compile(r"^[ \t]*(\d{5,6}(?:\.\d+)?)[ \t]*$", re.M)

#: Excel serials outside these years are not taken for dates (a number in a date column that is
#: really something else must be refused, not converted).
PLAUSIBLE_YEARS = (1950, 2199)
_EPOCH_1900 = datetime(1899, 12, 30)  # serial 60 is the non-existent 29 February 1900
_EPOCH_1904 = datetime(1904, 1, 1)
ACCEPTED = "YYYY-MM-DD HH:MM, DD/MM/YYYY HH:MM, MM/DD/YYYY or a date cell"


class DateError(ValueError):
    """A value that cannot become a due date; ``str()`` says why for a person."""


@dataclass(frozen=True)
class DateRules:
    """How to read the dates of one sheet."""

    zone: tzinfo = UTC
    order: DateOrder | None = None
    default_time: time = time(9, 0)
    date1904: bool = False
    epoch_ms: bool = False


def zone_named(name: str) -> tzinfo:
    """The IANA zone ``name`` (``UTC`` too); ValueError when there is no such zone."""
    if name.strip().upper() in {"UTC", "Z", "GMT"}:
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Australia/Sydney or UTC"
        ) from None


@dataclass
class DateEvidence:
    """What a whole column says about day-first or month-first dates (``03/04/2026``)."""

    dmy_row: int | None = None  # first row whose first number can only be a day (> 12)
    mdy_row: int | None = None  # first row whose second number can only be a day
    #: Text cells that are plain numbers read as Excel date serials: how many, the first's
    #: row, and the smallest and largest (a text file rarely holds serials: codes do look so).
    serials: int = 0
    serial_row: int | None = None
    serial_range: tuple[float, float] | None = None

    def observe(self, value: Any, row: int) -> None:
        """Note one value of the column, found first on ``row``."""
        if value.__class__ is not str:
            return
        match = _NUMERIC.fullmatch(value.strip())
        if match is None:
            return
        a, b = int(match["a"]), int(match["b"])
        if a > 12 >= b and (self.dmy_row is None or row < self.dmy_row):
            self.dmy_row = row
        elif b > 12 >= a and (self.mdy_row is None or row < self.mdy_row):
            self.mdy_row = row

    def observe_column(self, numbers: Sequence[int], values: Sequence[Any]) -> None:
        """Note a batch of the column's values, found on rows ``numbers``.

        Text is searched as one string for the first day-first and the first month-first
        witness, so a million rows cost a few regular-expression passes, not a million calls.
        """
        kinds = set(map(type, values))  # (a set made in C: a million rows at no cost)
        if kinds - {str}:  # a workbook's dates, maybe with some text: the text looked at
            if str in kinds:
                texts = list(map(is_, map(type, values), repeat(str)))
                found = zip(compress(values, texts), compress(numbers, texts), strict=True)
                for value, number in found:
                    self.observe(value, number)
            return
        text = "\n".join(values)
        if text.count("\n") != len(values) - 1:  # a value with a line break of its own
            text = "\n".join(v.replace("\n", " ") for v in values)
        self._serials(numbers, text)
        for pattern, attribute in ((_DMY_WITNESS, "dmy_row"), (_MDY_WITNESS, "mdy_row")):
            if getattr(self, attribute) is not None:
                continue  # batches come in row order: the first witness stays the first
            match = pattern.search(text)
            if match is not None:
                setattr(self, attribute, numbers[text.count("\n", 0, match.start())])

    def _serials(self, numbers: Sequence[int], text: str) -> None:
        found = [(m.start(), float(m.group(1))) for m in _SERIAL_LINE.finditer(text)]
        if not found:
            return
        if self.serial_row is None:
            self.serial_row = numbers[text.count("\n", 0, found[0][0])]
        values = [v for _, v in found]
        low, high = min(values), max(values)
        if self.serial_range is not None:
            low, high = min(low, self.serial_range[0]), max(high, self.serial_range[1])
        self.serial_range = (low, high)
        self.serials += len(found)

    def serial_note(self, column: str, date1904: bool) -> str | None:
        """What to say of the text cells read as Excel date serials."""
        if not self.serials or self.serial_range is None:
            return None
        epoch = _EPOCH_1904 if date1904 else _EPOCH_1900
        years = []
        for serial in self.serial_range:
            try:
                years.append((epoch + timedelta(days=serial)).year)
            except OverflowError:
                years.append(9999)
        span = f"{years[0]}" if years[0] == years[1] else f"{years[0]}–{years[1]}"
        return (
            f"column {column!r}: {self.serials:,} cells are plain numbers (the first on row "
            f"{self.serial_row}), read as Excel date serials, dates in {span}: a text file "
            "rarely holds those. If they are codes, not dates, map another column to the due date"
        )

    def order(self) -> DateOrder | None:
        """The order the column shows, or None when it shows none or both."""
        if self.dmy_row is not None and self.mdy_row is None:
            return "dmy"
        if self.mdy_row is not None and self.dmy_row is None:
            return "mdy"
        return None

    def conflict(self) -> str | None:
        if self.dmy_row is not None and self.mdy_row is not None:
            return (
                f"dates are written day-first (row {self.dmy_row}) and month-first "
                f"(row {self.mdy_row}) in one column: dates that read both ways are refused"
            )
        return None


class Converted(NamedTuple):
    """A due date in the API's form, and the warnings a person should see about it."""

    timestamp: str
    warnings: Sequence[str] = ()


def to_api(value: Any, rules: DateRules, clock: Any = None) -> Converted:
    """``value`` (a cell) as the API's UTC timestamp; ``clock`` is an optional time-of-day cell
    joined to a date. Raises :class:`DateError`."""
    if value.__class__ is datetime and value.tzinfo is None and clock is None:
        # A workbook's date cell, the common case: straight to UTC when the hour is steady.
        offset = _steady_offset(rules.zone, value.year, value.month, value.day, value.hour)
        if offset is not None:
            try:
                return Converted(_api_text(value - offset))
            except OverflowError:
                raise DateError(f"{_show(value)} is out of range") from None
    warnings: list[str] = []
    local, aware = _read(value, rules, warnings)
    if clock is not None:
        if not isinstance(local, date) or isinstance(local, datetime) or aware is not None:
            raise DateError(f"{_show(value)} already has a time; the time column must be empty")
        local = datetime.combine(local, read_time(clock))
    try:
        if aware is None:
            if not isinstance(local, datetime):
                local = datetime.combine(local, rules.default_time)
            offset = _steady_offset(rules.zone, local.year, local.month, local.day, local.hour)
            if offset is not None:
                return Converted(_api_text(local - offset), warnings)
            aware = localise(local, rules.zone, warnings)
        return Converted(_api_text(aware.astimezone(UTC).replace(tzinfo=None)), warnings)
    except OverflowError:
        raise DateError(f"{_show(value)} is out of range") from None


#: A datetime's text in the API's form; hours are counted from this moment.
_API_TEXT = methodcaller("isoformat", " ", "seconds")
_HOURS_FROM, _HOUR = datetime(2000, 1, 1), timedelta(hours=1)
#: Each zone's steady offsets (see :func:`_steady_offset`), by the local hour they start (the
#: hours since _HOURS_FROM).
_HOURS: dict[tzinfo, dict[int, timedelta | None]] = {}
_UNKNOWN: Any = object()


def naive_to_api(values: Sequence[datetime], rules: DateRules) -> list[str | None]:
    """``to_api(value, rules).timestamp`` of each of ``values`` (naive datetimes: a workbook's
    date cells, with no time column), made a column at a time; None for a value to be given to
    :func:`to_api` by itself (its hour has a daylight-saving change, or it is out of range). A
    test holds it to :func:`to_api`."""
    hours = list(map(floordiv, map(sub, values, repeat(_HOURS_FROM)), repeat(_HOUR)))
    known = _HOURS.setdefault(rules.zone, {})
    if len(known) > 100_000:
        known.clear()
    offsets = list(map(known.get, hours, repeat(_UNKNOWN)))
    for i in compress(range(len(values)), map(is_, offsets, repeat(_UNKNOWN))):
        if (offset := known.get(hours[i], _UNKNOWN)) is _UNKNOWN:
            start = _HOURS_FROM + hours[i] * _HOUR
            offset = known[hours[i]] = _steady_offset(rules.zone, start.year, start.month,
                                                      start.day, start.hour)  # fmt: skip
        offsets[i] = offset
    try:
        if None not in offsets:
            return list(map(_API_TEXT, map(sub, values, offsets)))
        return [
            None if offset is None else _API_TEXT(value - offset)
            for value, offset in zip(values, offsets, strict=True)
        ]
    except OverflowError:  # a moment at the end of the calendar: each by itself
        return [None] * len(values)


def _api_text(utc: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of a naive UTC datetime (seconds truncated)."""
    return utc.isoformat(sep=" ", timespec="seconds")


@lru_cache(maxsize=1 << 16)
def _steady_offset(zone: tzinfo, year: int, month: int, day: int, hour: int) -> timedelta | None:
    """The zone's UTC offset through the whole local hour starting at ``hour`` of that day, or
    None when a daylight-saving change falls in it (then each time is checked on its own)."""
    if zone is UTC:
        return timedelta(0)
    start = datetime(year, month, day, hour)
    end = start + timedelta(minutes=59, seconds=59)
    # (The zone read the wall times itself: each, and its second reading where it has one.)
    moments = (start, start.replace(fold=1), end, end.replace(fold=1))
    offsets = {zone.utcoffset(moment) for moment in moments}
    return offsets.pop() if len(offsets) == 1 else None


def localise(naive: datetime, zone: tzinfo, warnings: list[str]) -> datetime:
    """``naive`` wall-clock time in ``zone``, aware. DateError in a DST gap; the first of two in
    a DST overlap, with a warning."""
    if zone is UTC:
        return naive.replace(tzinfo=UTC)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != naive:
        raise DateError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone} (the clocks go forward then)"
        )
    warnings.append(
        f"{naive:%Y-%m-%d %H:%M} occurs twice in {zone} (the clocks go back then): "
        "the first was taken"
    )
    return first


def read_time(value: Any) -> time:
    """A time of day from a cell: ``14:30``, ``2:30 PM``, a time cell, or an Excel fraction."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, datetime):
        return value.time()
    if isinstance(value, timedelta) and timedelta(0) <= value < timedelta(days=1):
        return (datetime.min + value).time()
    if isinstance(value, float) and 0 <= value < 1:
        return (datetime.min + timedelta(days=value)).time().replace(microsecond=0)
    if isinstance(value, str):
        match = _CLOCK.fullmatch(value.strip())
        if match:
            hour, minute, second = _clock(match)
            try:
                return time(hour, minute, second)
            except ValueError:
                pass
    raise DateError(f"{_show(value)} is not a time of day (write HH:MM)")


def _read(value: Any, rules: DateRules, warnings: list[str]) -> tuple[date, datetime | None]:
    """``(local date or datetime, aware datetime or None)``."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value, value
        return value, None
    if isinstance(value, date):
        return value, None
    if isinstance(value, bool | time | timedelta):
        raise DateError(f"{_show(value)} is not a date")
    if isinstance(value, int | float):
        if rules.epoch_ms and value >= 1e11:
            return _epoch_ms(int(value))
        return _number(value, rules, warnings, str(value)), None
    text = str(value).strip()
    if rules.epoch_ms and text.isdigit() and len(text) >= 11:
        return _epoch_ms(int(text))
    if _SERIAL.fullmatch(text):
        warnings.append(f"{text!r} was read as an Excel date serial")
        return _number(float(text), rules, warnings, text), None
    if text.isdigit() and len(text) == 8:
        return _make(text, int(text[:4]), int(text[4:6]), int(text[6:])), None
    for parse in (_iso, _numeric, _named):
        parsed = parse(text, rules, warnings)
        if parsed is not None:
            return parsed
    raise DateError(f"{text!r} is not a date; write {ACCEPTED}")


def _number(number: float, rules: DateRules, warnings: list[str], shown: str) -> date:
    """An Excel serial: a whole number is a date (no time of day), a fraction adds the time."""
    epoch = _EPOCH_1904 if rules.date1904 else _EPOCH_1900
    try:
        moment = epoch + timedelta(days=number)
    except OverflowError:
        moment = None
    low, high = PLAUSIBLE_YEARS
    if moment is None or not low <= moment.year <= high:
        raise DateError(
            f"{shown} is a number, not a date (as an Excel date it would fall outside "
            f"{low}–{high}); format the cell as a date or write {ACCEPTED}"
        )
    if float(number).is_integer():
        return moment.date()
    # Serial fractions carry float noise: round to the nearest second.
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)


def _epoch_ms(millis: int) -> tuple[datetime, datetime]:
    try:
        moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise DateError(f"{millis} is not a time in epoch milliseconds") from None
    return moment, moment


def _clock(match: re.Match[str]) -> tuple[int, int, int]:
    hour, minute = int(match["H"]), int(match["M"])
    second = int(match["S"] or 0)
    meridiem = (match["ap"] or "").replace(".", "").lower()
    if meridiem:
        if not 1 <= hour <= 12:
            raise DateError(f"hour {hour} cannot go with {meridiem.upper()}")
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    return hour, minute, second


def _make(text: str, year: int, month: int, day: int, clock: re.Match[str] | None = None) -> Any:
    try:
        if clock is not None and clock["H"] is not None:
            return datetime(year, month, day, *_clock(clock))
        return date(year, month, day)
    except ValueError:
        raise DateError(f"{text!r} is not a real date or time") from None


def _year(text: str, raw: str, warnings: list[str]) -> int:
    if len(raw) == 2:
        warnings.append(f"{text!r}: the two-digit year was read as 20{raw}")
        return 2000 + int(raw)
    return int(raw)


def _iso(text: str, rules: DateRules, warnings: list[str]) -> tuple[Any, Any] | None:
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    local = _make(text, int(match["y"]), int(match["m"]), int(match["d"]), match)
    offset = match["tz"]
    if offset is None:
        return local, None
    if not isinstance(local, datetime):
        local = datetime.combine(local, time(0, 0))
    if offset in {"Z", "UTC", "GMT"}:
        zone: tzinfo = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        if minutes >= 24 * 60:
            raise DateError(f"{text!r} has an impossible offset")
        zone = timezone(sign * timedelta(minutes=minutes))
    aware = local.replace(tzinfo=zone)
    return aware, aware


def _numeric(text: str, rules: DateRules, warnings: list[str]) -> tuple[Any, Any] | None:
    match = _NUMERIC.fullmatch(text)
    if match is None:
        return None
    a, b = int(match["a"]), int(match["b"])
    year = _year(text, match["y"], warnings)
    if a == b:
        order: DateOrder | None = "dmy"  # both readings give the same date
    elif rules.order is not None:
        order = rules.order
    elif a > 12:
        order = "dmy"
    elif b > 12:
        order = "mdy"
    else:
        raise DateError(
            f"{text!r} is ambiguous: {a} {_month_abbr(b)} or {b} {_month_abbr(a)}? Give "
            "--date-order dmy or mdy, or write YYYY-MM-DD"
        )
    day, month = (a, b) if order == "dmy" else (b, a)
    if month > 12:
        raise DateError(
            f"{text!r} cannot be {'day-first' if order == 'dmy' else 'month-first'} "
            f"(there is no month {month}); check --date-order"
        )
    return _make(text, year, month, day, match), None


def _month_abbr(number: int) -> str:
    names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return names[number - 1] if 1 <= number <= 12 else str(number)


def _named(text: str, rules: DateRules, warnings: list[str]) -> tuple[Any, Any] | None:
    for pattern in (_DAY_MONTH, _MONTH_DAY):
        match = pattern.fullmatch(text)
        if match is None:
            continue
        month = _MONTH_NAMES.get(match["mon"].lower())
        if month is None:
            return None
        return _make(text, int(match["y"]), month, int(match["d"]), match), None
    return None


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
