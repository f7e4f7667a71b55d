"""Normalising cells: ids, status and priority words, text, due dates with a time column."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.dates import DateRules, zone_named
from importer.map import map_columns
from importer.model import Outcome, Payload, Row
from importer.normalise import CellError, Normaliser, to_integer


def normaliser(headers, profile=None, **rules):
    mapping = map_columns(headers, path="t.csv", profile=profile)
    return Normaliser(mapping, DateRules(epoch_ms=mapping.epoch_ms, **rules))


@pytest.mark.parametrize("value", ["1234", 1234, 1234.0, " 1234 ", "1234.0", "+1234"])
def test_integers(value):
    assert to_integer(value) == 1234


@pytest.mark.parametrize("value", ["12.5", 12.5, "12a", "1e3", "", True, "-3", "1 234"])
def test_not_integers_are_23016(value):
    with pytest.raises(CellError) as info:
        to_integer(value)
    assert info.value.code == 23016


@given(st.integers(min_value=0, max_value=10**15))
def test_any_whole_number_written_any_way_is_itself(number):
    for written in (number, float(number), str(number), f" {number} ", f"{number}.0"):
        assert to_integer(written) == number


ROW = ["name", "endDatetime", "status", "priority", "contactId", "description"]


def run(norm, **cells):
    full = {"name": "Call", "endDatetime": "2026-12-01 10:00", **cells}
    return norm(Row(7, full))


@pytest.mark.parametrize(
    ("word", "code"),
    [("Not Started", 0), ("not started", 0), ("NOT_STARTED", 0), ("to do", 0), ("Open", 0),
     ("in progress", 1), ("Waiting on someone else", 2), ("deferred", 2), ("On Hold", 2),
     ("Canceled", 3), ("Done", 4), ("closed", 4), ("4", 4), (3, 3), (1.0, 1)],
)  # fmt: skip
def test_status_words(word, code):
    assert run(normaliser(ROW), status=word).params["status"] == code


@pytest.mark.parametrize("word", ["Pending", "5", "maybe", True])
def test_unclear_status_is_refused_with_the_accepted_values(word):
    outcome = run(normaliser(ROW), status=word)
    assert isinstance(outcome, Outcome) and outcome.result == "invalid"
    assert (outcome.error_code, outcome.field) == (23016, "status")
    assert "accepted: 0 (Not Started), 1 (In Progress)" in outcome.message


@pytest.mark.parametrize(
    ("word", "priority"),
    [("HIGH", "high"), ("Normal", "medium"), ("medium", "medium"), ("lowest", "low")],
)
def test_priority_words(word, priority):
    assert run(normaliser(ROW), priority=word).params["priority"] == priority


def test_unknown_priority_lists_the_accepted_words():
    outcome = run(normaliser(ROW), priority="urgent")
    assert outcome.error_code == 23016 and "accepted: high, highest, low" in outcome.message


def test_profile_words_apply():
    norm = normaliser(["Activity - Subject", "Activity - Due date", "Activity - Done"],
                      profile="pipedrive")  # fmt: skip
    row = Row(2, {"Activity - Subject": "x", "Activity - Due date": "2026-12-01",
                  "Activity - Done": "1"})  # fmt: skip
    assert norm(row).params["status"] == 4


def test_hubspot_none_priority_means_no_priority():
    norm = normaliser(["hs_task_subject", "hs_timestamp", "hs_task_priority"], profile="hubspot")
    row = Row(2, {"hs_task_subject": "x", "hs_timestamp": "1764583200000",
                  "hs_task_priority": "NONE"})  # fmt: skip
    payload = norm(row)
    assert payload.params == {"name": "x", "endDatetime": "2025-12-01 10:00:00"}


def test_text_is_trimmed_and_otherwise_kept():
    payload = run(normaliser(ROW), name="  Café\n“quoted”  ", description=" 007 \u00a0")
    assert payload.params["name"] == "Café\n“quoted”"  # a name: trimmed
    assert payload.params["description"] == " 007 \u00a0"  # free text: as written
    assert "description" not in run(normaliser(ROW), description=" \u00a0 ").params  # blank


def test_blank_cells_are_absent():
    payload = run(normaliser(ROW), contactId="  ", description="")
    assert "contactId" not in payload.params and "description" not in payload.params


def test_bad_date_names_the_column():
    outcome = run(normaliser(ROW), endDatetime="31/02/2026")
    assert (outcome.result, outcome.error_code, outcome.field) == ("invalid", "BAD_DATE",
                                                                   "endDatetime")  # fmt: skip


def test_dates_in_the_sheet_zone_with_warnings_carried():
    norm = normaliser(ROW, zone=zone_named("Australia/Sydney"))
    payload = run(norm, endDatetime="2026-04-05 02:30")
    assert isinstance(payload, Payload)
    assert payload.params["endDatetime"] == "2026-04-04 15:30:00"
    assert payload.warnings and payload.warnings[0].startswith("endDatetime: ")


def test_due_time_column_joins_the_date():
    norm = normaliser(["name", "Due Date", "Due Time"])
    row = Row(3, {"name": "x", "Due Date": date(2026, 12, 1), "Due Time": "16:45"})
    assert norm(row).params["endDatetime"] == "2026-12-01 16:45:00"


def test_a_profiles_utc_times_win_over_a_configured_default_zone(sandbox, tmp_path):
    """tests/data/pipedrive-utc.csv with a configuration whose default zone is Sydney (as the
    README's example): Pipedrive writes due times in UTC, so 10:30 is sent as 10:30, not as
    23:30 the day before, and the run says so. A zone given on the command line is used, and
    the run warns that the profile exports UTC."""
    from click.testing import CliRunner

    from importer.cli import main

    from .conftest import REPOSITORY, sent
    from .test_cli_run import env_for

    data = REPOSITORY / "tests" / "data"
    config = tmp_path / "ivvy.toml"
    config.write_text('[run]\ntimezone = "Australia/Sydney"\n', encoding="utf-8")

    def night(name: str, *more: str) -> tuple[str, list[str]]:
        source = tmp_path / f"{name}.csv"
        text = (data / "pipedrive-utc.csv").read_text(encoding="utf-8")
        source.write_text(text.replace("Call the venue", f"Call ({name})"), encoding="utf-8")
        args = ["--config", str(config), "run", str(source), "--profile", "pipedrive",
                "--json", *more]  # fmt: skip
        outcome = CliRunner().invoke(main, args, env=env_for(sandbox))
        assert outcome.exit_code == 0, outcome.output
        summary = json.loads(outcome.stdout.strip().splitlines()[-1])
        return sent(sandbox)[-1]["endDatetime"], summary["warnings"]

    due, warnings = night("configured")
    assert due == "2026-12-01 10:30:00"
    assert (
        "the times are read in UTC, the zone --profile pipedrive exports them in, not in the "
        "default zone Australia/Sydney (give --timezone to choose another)"
    ) in warnings
    due, warnings = night("given", "--timezone", "Australia/Sydney")
    assert due == "2026-11-30 23:30:00"  # as told, and told what the profile says
    assert any("although --profile pipedrive exports them in UTC" in w for w in warnings)


def test_every_problem_of_a_row_is_in_its_message_and_the_first_ones_code_in_error_code(
    tmp_path,
):
    """tests/data/many-problems.csv: row 2 has an impossible date, a contact that is no number,
    an unknown priority and no name. A person fixes a row once, not in four rounds."""
    from importer.options import RunOptions
    from importer.prepare import prepare

    from .conftest import REPOSITORY

    prepared = prepare(REPOSITORY / "tests" / "data" / "many-problems.csv", RunOptions())
    rows = list(prepared.source.rows())
    outcome = Normaliser(prepared.mapping, prepared.rules, prepared.source.headers)(rows[0])
    assert isinstance(outcome, Outcome) and outcome.result == "invalid"
    assert (outcome.error_code, outcome.field) == ("BAD_DATE", "Due Date")
    assert outcome.message.startswith("'31/02/2026' is not a real date")
    for part in ("also Contact ID: 'abc' is not a whole number",
                 "also Priority: unknown priority 'urgent'",
                 "also name: name is required to create a task"):  # fmt: skip
        assert part in outcome.message


_DUE_CELLS = st.one_of(
    st.datetimes(min_value=datetime(2026, 3, 28), max_value=datetime(2026, 4, 6)),
    st.datetimes(min_value=datetime(2026, 10, 3), max_value=datetime(2026, 10, 5)),
    st.sampled_from([datetime(2026, 10, 4, 2, 15), datetime(2026, 4, 5, 2, 30), datetime.max,
                     datetime(1, 1, 1), "2026-04-05 02:30", "soon", None, "", 45000.0]),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(min_value=date(2026, 3, 28), max_value=date(2026, 4, 6)),  # calamine: a midnight
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    cells=st.lists(_DUE_CELLS, min_size=1, max_size=60),
    zone_name=st.sampled_from(["UTC", "Australia/Sydney", "Europe/London", "Pacific/Chatham"]),
    size=st.sampled_from([1, 7, 4096]),
)
def test_a_due_column_normalised_whole_is_each_cell_converted_by_itself(cells, zone_name, size):
    """A batch's due dates are converted a column at a time (a workbook's date cells together,
    each distinct one once, remembered from batch to batch): each is what a conversion of that
    cell by itself makes, its timestamp and its warnings, or its refusal."""
    from importer.dates import DateError, to_api
    from importer.read import Batch

    rules = DateRules(zone=zone_named(zone_name))
    norm = Normaliser(map_columns(["name", "Due"], path="t.xlsx"), rules, ["name", "Due"])
    for start in range(0, len(cells), size):
        part = cells[start : start + size]
        numbers = list(range(start, start + len(part)))
        normalised = norm.batch(Batch(numbers, columns=[["x"] * len(part), part]))
        dues = dict((name, values) for name, _, values in normalised.plan)["endDatetime"]
        for i, cell in enumerate(part):
            if cell is None or cell == "":
                assert dues[i] is None
                continue
            try:
                converted = to_api(cell, rules)
            except DateError as exc:
                assert isinstance(dues[i], CellError) and str(exc) in str(dues[i]), (cell, dues[i])
                continue
            said = tuple(f"Due: {w}" for w in converted.warnings)
            assert (dues[i], normalised.notes.get(i, ())) == (converted.timestamp, said), cell
