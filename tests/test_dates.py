"""Due dates: formats, the date order from evidence, time zones with DST, Excel serials."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.dates import DateError, DateEvidence, DateRules, to_api, zone_named

SYDNEY = zone_named("Australia/Sydney")
UTC_RULES = DateRules()


def api(value, **rules):
    return to_api(value, DateRules(**rules)).timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01 14:30:00", "2026-12-01 14:30:00"),
        ("2026-12-01 14:30", "2026-12-01 14:30:00"),
        ("2026-12-01T14:30", "2026-12-01 14:30:00"),
        ("2026-12-01T14:30:15.250Z", "2026-12-01 14:30:15"),
        ("2026-12-01T14:30:00+10:00", "2026-12-01 04:30:00"),
        ("2026-12-01T14:30:00-0500", "2026-12-01 19:30:00"),
        ("2026-12-01 14:30:00 UTC", "2026-12-01 14:30:00"),
        ("2026/12/01", "2026-12-01 09:00:00"),
        ("20261201", "2026-12-01 09:00:00"),
        ("13/04/2026", "2026-04-13 09:00:00"),
        ("04/13/2026 2:30 PM", "2026-04-13 14:30:00"),
        ("04/13/2026 12:05 am", "2026-04-13 00:05:00"),
        ("13.04.2026 17:45", "2026-04-13 17:45:00"),
        ("1 Dec 2026", "2026-12-01 09:00:00"),
        ("1-Dec-2026 10:00", "2026-12-01 10:00:00"),
        ("December 1, 2026", "2026-12-01 09:00:00"),
        ("Dec 1st, 2026 9:15 pm", "2026-12-01 21:15:00"),
        ("05/05/2026", "2026-05-05 09:00:00"),
    ],
)
def test_text_formats_in_utc(text, expected):
    assert api(text) == expected


def test_native_cells():
    assert api(datetime(2026, 12, 1, 14, 30)) == "2026-12-01 14:30:00"
    assert api(date(2026, 12, 1)) == "2026-12-01 09:00:00"
    assert api(datetime(2026, 12, 1, 14, 30, tzinfo=UTC)) == "2026-12-01 14:30:00"


def test_date_only_keeps_its_day_in_the_sheet_zone():
    # 09:00 in Sydney is the evening before in UTC: the task is still due on 1 December there.
    assert api("2026-12-01", zone=SYDNEY) == "2026-11-30 22:00:00"
    assert api(date(2026, 12, 1), zone=SYDNEY, default_time=time(17, 0)) == "2026-12-01 06:00:00"


def test_local_times_follow_daylight_saving():
    assert api("2026-07-01 09:00", zone=SYDNEY) == "2026-06-30 23:00:00"  # AEST +10
    assert api("2026-12-01 09:00", zone=SYDNEY) == "2026-11-30 22:00:00"  # AEDT +11


def test_a_time_in_the_spring_forward_gap_is_refused():
    with pytest.raises(DateError, match="does not exist in Australia/Sydney"):
        to_api("2026-10-04 02:30", DateRules(zone=SYDNEY))


def test_a_time_that_occurs_twice_takes_the_first_with_a_warning():
    converted = to_api("2026-04-05 02:30", DateRules(zone=SYDNEY))
    assert converted.timestamp == "2026-04-04 15:30:00"  # 02:30 AEDT (+11), the first one
    assert "occurs twice" in converted.warnings[0]


@pytest.mark.parametrize("text", ["31/02/2026", "2026-02-30", "2026-13-01", "30 Feb 2026",
                                  "2026-12-01 25:00", "13:00 pm 01/12/2026", "next tuesday",
                                  "2026-12-01T10:00+25:00"])  # fmt: skip
def test_impossible_or_unreadable_dates_are_refused(text):
    with pytest.raises(DateError):
        to_api(text, UTC_RULES)


def test_ambiguous_dates_are_refused_unless_an_order_is_known():
    with pytest.raises(DateError, match="ambiguous: 3 Apr or 4 Mar"):
        to_api("03/04/2026", UTC_RULES)
    assert api("03/04/2026", order="dmy") == "2026-04-03 09:00:00"
    assert api("03/04/2026", order="mdy") == "2026-03-04 09:00:00"


def test_an_order_that_the_value_contradicts_is_refused():
    with pytest.raises(DateError, match="no month 13"):
        to_api("04/13/2026", DateRules(order="dmy"))


def test_evidence_from_the_whole_column_decides_the_order():
    evidence = DateEvidence()
    for row, text in enumerate(["03/04/2026", "05/06/2026", "25/06/2026", "2026-01-01"], 2):
        evidence.observe(text, row)
    assert evidence.order() == "dmy" and evidence.dmy_row == 4
    evidence.observe("06/25/2026", 9)
    assert evidence.order() is None
    assert "day-first (row 4) and month-first (row 9)" in evidence.conflict()


def test_two_digit_years_are_20xx_with_a_warning():
    converted = to_api("25/12/26", UTC_RULES)
    assert converted.timestamp == "2026-12-25 09:00:00"
    assert "two-digit year" in converted.warnings[0]


def test_excel_serials_in_both_date_systems():
    assert api(44197) == "2021-01-01 09:00:00"
    assert api(44197.5) == "2021-01-01 12:00:00"
    assert api(42735, date1904=True) == "2021-01-01 09:00:00"
    assert api("44197") == "2021-01-01 09:00:00"


@pytest.mark.parametrize("number", [60, 12, 1234, 9_999_999, -5])
def test_numbers_that_are_not_plausible_dates_are_refused(number):
    with pytest.raises(DateError, match="is a number, not a date"):
        to_api(number, UTC_RULES)


def test_epoch_milliseconds_when_the_profile_says_so():
    assert api(1764583200000, epoch_ms=True) == "2025-12-01 10:00:00"
    assert api("1764583200000", epoch_ms=True) == "2025-12-01 10:00:00"


def test_a_time_column_joins_the_date():
    assert to_api("2026-12-01", UTC_RULES, "14:30").timestamp == "2026-12-01 14:30:00"
    assert to_api(date(2026, 12, 1), UTC_RULES, time(8, 15)).timestamp == "2026-12-01 08:15:00"
    assert to_api("2026-12-01", UTC_RULES, timedelta(hours=7)).timestamp == "2026-12-01 07:00:00"
    with pytest.raises(DateError, match="already has a time"):
        to_api("2026-12-01 10:00", UTC_RULES, "14:30")
    with pytest.raises(DateError, match="not a time of day"):
        to_api("2026-12-01", UTC_RULES, "teatime")


ZONES = ["UTC", "Australia/Sydney", "Australia/Brisbane", "Europe/London", "America/New_York",
         "Asia/Kolkata", "Pacific/Chatham"]  # fmt: skip
FORMATS = [
    lambda d: d.strftime("%Y-%m-%d %H:%M:%S"),
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S"),
    lambda d: d.strftime("%d/%m/%Y %H:%M:%S"),
    lambda d: d.strftime("%m/%d/%Y %I:%M:%S %p"),
    lambda d: d.strftime("%d %b %Y %H:%M:%S"),
    lambda d: d.replace(tzinfo=None),
]


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2150, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0)),
    zone_name=st.sampled_from(ZONES),
    fmt=st.sampled_from(range(len(FORMATS))),
)
def test_any_instant_written_in_local_time_comes_back_as_the_same_utc(instant, zone_name, fmt):
    zone = zone_named(zone_name)
    local = instant.astimezone(zone)
    order = "mdy" if fmt == 3 else "dmy"
    converted = to_api(FORMATS[fmt](local), DateRules(zone=zone, order=order))
    expected = instant
    back = local.replace(tzinfo=None).replace(tzinfo=zone, fold=0).astimezone(UTC)
    if back != instant:
        # The wall time occurs twice (clocks went back): the first occurrence is taken.
        assert converted.warnings and "occurs twice" in converted.warnings[0]
        expected = back
    assert converted.timestamp == expected.strftime("%Y-%m-%d %H:%M:%S")


@settings(max_examples=200, deadline=None)
@given(
    instant=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2150, 1, 1)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: m - m % 15),
)
def test_any_offset_timestamp_is_the_same_instant(instant, offset_minutes):
    aware = instant.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = aware.isoformat()
    expected = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert to_api(text, DateRules(zone=SYDNEY)).timestamp == expected


def test_plain_numbers_in_a_text_files_date_column_are_told_with_the_years_they_became():
    """tests/data/numbers-in-a-date-column.csv: 5-digit codes in the due column read as Excel
    serials (years 2050–2157), which a text file rarely holds: the run says so, on the
    terminal, with the row of the first and the years."""
    from importer.options import RunOptions
    from importer.prepare import prepare

    from .conftest import REPOSITORY

    prepared = prepare(REPOSITORY / "tests" / "data" / "numbers-in-a-date-column.csv", RunOptions())
    assert (
        "column 'Due Date': 2 cells are plain numbers (the first on row 2), read as Excel date "
        "serials, dates in 2050–2157: a text file rarely holds those"
    ) in " ".join(prepared.warnings)


def test_a_workbooks_date_column_with_some_text_is_searched_in_its_text_alone():
    """A column of date cells with a few texts among them: only the texts are read for the
    date order, each found on its own row."""
    evidence = DateEvidence()
    values = [datetime(2026, 4, 3), "03/04/2026", 45000.0, "13/04/2026", None, "04/14/2026"]
    evidence.observe_column([2, 3, 4, 5, 6, 7], values)
    assert (evidence.dmy_row, evidence.mdy_row) == (5, 7)
    evidence.observe_column([8, 9], [datetime(2026, 1, 1), "25/12/2026"])
    assert evidence.dmy_row == 5  # the first witness stays the first


@pytest.mark.parametrize("zone_name", [*ZONES, "Australia/Lord_Howe"])
def test_each_quarter_hour_around_each_clock_change_reads_as_the_zone_says(zone_name):
    """The steady hours are found from the zone's own offsets; around each change of the clocks
    (2026, 2027), every quarter hour of a date cell and of its text reads as a conversion of
    that wall time by itself does: the same instant, a warning where it occurs twice, refused
    where it does not exist."""
    from importer.dates import localise

    zone = zone_named(zone_name)
    rules = DateRules(zone=zone, order="dmy")
    hours = [datetime(2026, 1, 1) + timedelta(hours=n) for n in range(2 * 365 * 24)]
    changes = [h for h in hours if zone.utcoffset(h) != zone.utcoffset(h + timedelta(hours=1))]
    assert changes or zone_name in ("UTC", "Australia/Brisbane", "Asia/Kolkata")
    for change in changes:
        for minutes in range(-60, 150, 15):
            wall = change + timedelta(minutes=minutes)
            said: list[str] = []
            try:
                aware = localise(wall, zone, said)
                expected = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            except DateError:
                expected = None
            for cell in (wall, wall.strftime("%d/%m/%Y %H:%M")):
                try:
                    converted = to_api(cell, rules)
                except DateError:
                    assert expected is None, (wall, cell)
                    continue
                assert converted.timestamp == expected, (wall, cell)
                assert bool(converted.warnings) == bool(said), (wall, cell)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2028, 2, 1)),
            st.datetimes(),  # the ends of the calendar too
            st.sampled_from(
                [
                    datetime(2026, 10, 4, 2, 15),
                    datetime(2026, 4, 5, 2, 30),
                    datetime(2026, 3, 29, 1, 30),
                    datetime(1, 1, 1),
                    datetime.max,
                ]
            ),
        ),
        max_size=40,
    ),
    zone_name=st.sampled_from([*ZONES, "Australia/Lord_Howe"]),
)
def test_a_column_of_date_cells_converts_as_each_cell_by_itself(values, zone_name):
    """A workbook's date cells are converted a column at a time: each the timestamp a
    conversion of that cell by itself makes, with no warning; or left to that conversion (an
    hour with a clock change, a moment at the end of the calendar)."""
    from importer.dates import naive_to_api

    rules = DateRules(zone=zone_named(zone_name))
    made = naive_to_api(values, rules)
    assert len(made) == len(values)
    for value, text in zip(values, made, strict=True):
        if text is None:
            continue
        converted = to_api(value, rules)
        assert (converted.timestamp, converted.warnings) == (text, ()), value
    steady = [v for v, t in zip(values, made, strict=True) if t is None]
    if zone_name == "UTC":  # no clock changes: only the calendar's ends go by themselves
        assert all(v.year in (1, 9999) for v in steady)


def test_a_column_of_date_cells_in_a_zone_with_clock_changes_is_mostly_made_together():
    from importer.dates import naive_to_api

    rules = DateRules(zone=zone_named("Australia/Sydney"))
    hours = [datetime(2026, 1, 1) + timedelta(minutes=15 * n) for n in range(4 * 24 * 365)]
    made = naive_to_api(hours, rules)
    unsteady = [h for h, t in zip(hours, made, strict=True) if t is None]
    assert len(unsteady) == 8 and {h.hour for h in unsteady} == {2}  # the two changes' hours
    assert all(to_api(h, rules).timestamp == t for h, t in zip(hours, made, strict=True) if t)
