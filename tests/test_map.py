"""Mapping columns to fields: names, aliases, mapping files, profiles, warnings."""

from __future__ import annotations

import pytest

from importer.errors import SourceError, UsageError
from importer.map import canon, load_mapping_file, map_columns


def mapped(headers, **kw):
    return map_columns(headers, path="t.csv", **kw)


def test_api_names_in_any_case():
    mapping = mapped(["NAME", "enddatetime", "ContactId"])
    assert mapping.columns == {
        "name": "NAME",
        "endDatetime": "enddatetime",
        "contactId": "ContactId",
    }
    assert mapping.how["name"] == "field name"


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Task Name", "name"), ("Subject", "name"), ("due_date", "endDatetime"),
        ("Due", "endDatetime"), ("DEADLINE", "endDatetime"), ("Contact ID", "contactId"),
        ("contact-id", "contactId"), ("Assigned To", "assignedUserId"), ("Notes", "description"),
        ("Due Time", "endTime"), ("Opportunity ID", "leadId"),
    ],
)  # fmt: skip
def test_aliases_ignore_case_spaces_and_punctuation(header, field):
    mapping = mapped(["id", header])
    assert mapping.columns[field] == header
    assert mapping.how[field] in {"alias", "field name"}


def test_exact_name_wins_over_alias():
    mapping = mapped(["Subject", "name", "endDatetime"])
    assert mapping.columns["name"] == "name"
    assert any("'Subject' also looks like name" in w for w in mapping.warnings)


def test_unknown_columns_are_kept_and_reported_with_the_closest_field():
    mapping = mapped(["name", "due", "endDatetme", "Legacy Ref", "Priorty"])
    assert mapping.unused == ("endDatetme", "Legacy Ref", "Priorty")
    warnings = " | ".join(mapping.warnings)
    assert "'Legacy Ref' is not imported (kept in the results)" in warnings
    assert "'Priorty' is not imported (kept in the results): did you mean 'priority'?" in warnings


def test_missing_required_column_stops_and_lists_the_headers():
    with pytest.raises(SourceError) as info:
        mapped(["Title", "Owner"])
    message = str(info.value)
    assert "no column for endDatetime (required to create tasks)" in message
    assert "'Title', 'Owner'" in message


def test_an_id_column_is_enough_for_updates():
    assert mapped(["id", "status"]).columns == {"id": "id", "status": "status"}


def write_mapping(tmp_path, text):
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return load_mapping_file(path)


def test_mapping_file_decides_first(tmp_path):
    mapping_file = write_mapping(
        tmp_path,
        """
[columns]
"Task Subject" = "name"
"When" = "endDatetime"
"Subject" = "ignore"

[status]
"Waiting on customer" = "On Hold"
"Parked" = 2

[priority]
"Urgent" = "high"

[options]
timezone = "Australia/Sydney"
""",
    )
    mapping = mapped(["Subject", "task subject", "WHEN"], mapping_file=mapping_file)
    assert mapping.columns == {"name": "task subject", "endDatetime": "WHEN"}
    assert mapping.how["name"] == "mapping file m.toml"
    assert mapping.status_words[canon("waiting on customer")] == 2
    assert mapping.status_words["parked"] == 2
    assert mapping.priority_words["urgent"] == "high"
    assert mapping.options == {"timezone": "Australia/Sydney"}
    assert not any("Subject" in w for w in mapping.warnings)  # ignored on purpose


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[columns]\nDue = 'dueDate'", "'Due' = 'dueDate': unknown field"),
        ("[status]\nMeh = 'soon'", "[status] 'Meh' = 'soon'"),
        ("[priority]\nMeh = 'urgent'", "[priority] 'Meh' = 'urgent'"),
        ("profile = 'sap'", "unknown profile 'sap'"),
        ("[colums]\nx = 'name'", "unknown entries ['colums']"),
        ("[columns\n", "not valid TOML"),
    ],
)
def test_bad_mapping_files_are_usage_errors(tmp_path, text, message):
    with pytest.raises(UsageError) as info:
        write_mapping(tmp_path, text)
    assert "m.toml" in str(info.value) and message in str(info.value)


def test_salesforce_profile():
    headers = ["Id", "Subject", "ActivityDate", "Status", "Priority", "Description", "OwnerId",
               "WhoId"]  # fmt: skip
    mapping = mapped(headers, profile="salesforce")
    assert mapping.columns == {
        "name": "Subject", "endDatetime": "ActivityDate", "status": "Status",
        "priority": "Priority", "description": "Description",
    }  # fmt: skip
    assert mapping.status_words[canon("Waiting on someone else")] == 2
    assert mapping.priority_words["normal"] == "medium"
    assert mapping.suggested_key == "Id"
    assert "OwnerId" in mapping.unused and "WhoId" in mapping.unused
    # Salesforce's Id is a legacy id, never an iVvy task id, and needs no warning.
    assert "Id" in mapping.unused and not any("'Id'" in w for w in mapping.warnings)


def test_pipedrive_profile_joins_the_due_time_and_reads_done():
    headers = ["Activity - ID", "Activity - Subject", "Activity - Due date",
               "Activity - Due time", "Activity - Done"]  # fmt: skip
    mapping = mapped(headers, profile="pipedrive")
    assert mapping.columns["endTime"] == "Activity - Due time"
    assert mapping.status_words["1"] == 4 and mapping.status_words["todo"] == 0
    assert mapping.timezone == "UTC"


def test_hubspot_profile():
    mapping = mapped(["hs_task_subject", "hs_timestamp", "hs_task_priority"], profile="hubspot")
    assert mapping.epoch_ms
    assert mapping.priority_words["none"] is None


def test_unknown_profile_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown profile 'sap'"):
        mapped(["name"], profile="sap")


def test_a_typo_in_a_mapping_file_is_named_when_it_leaves_a_required_field_without_a_column(
    tmp_path,
):
    """tests/data/mapping-typo.*: the mapping file names 'Finsh' for endDatetime; the run stops
    (nothing can be created without a due date), and says which line of the file is wrong."""
    from click.testing import CliRunner

    from importer.cli import main

    from .conftest import REPOSITORY

    data = REPOSITORY / "tests" / "data"
    for name in ("mapping-typo.csv", "mapping-typo.toml"):
        (tmp_path / name).write_bytes((data / name).read_bytes())
    args = ["validate", str(tmp_path / "mapping-typo.csv"), "--offline",
            "--mapping", str(tmp_path / "mapping-typo.toml")]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2
    assert (
        "mapping file names column 'Finsh' for endDatetime, which the source does not have "
        "(did you mean 'Finish'?); no column for endDatetime"
    ) in outcome.stderr


def test_a_profiles_key_is_advised_only_when_not_given_and_free_text_is_kept(tmp_path):
    """tests/data/salesforce-tasks.csv: the advice to give --key 'Id' is for a run without it;
    the description keeps its trailing spaces and its non-breaking space."""
    from importer.options import RunOptions
    from importer.prepare import prepare

    from .conftest import REPOSITORY

    source = REPOSITORY / "tests" / "data" / "salesforce-tasks.csv"
    advice = "give --key 'Id' to update them on later runs"
    without = prepare(source, RunOptions(profile="salesforce"))
    assert any(advice in w for w in without.warnings)
    given = prepare(source, RunOptions(profile="salesforce", key="Id"))
    assert not any(advice in w for w in given.warnings)
    (row,) = list(given.source.rows())
    from importer.normalise import Normaliser

    payload = Normaliser(given.mapping, given.rules, given.source.headers)(row)
    assert payload.params["description"] == "Ask about parking  \u00a0"


def test_one_column_is_mapped_on_the_command_line_without_a_mapping_file(tmp_path):
    """--column 'Finish=endDatetime' (repeatable, 'ignore' too) maps columns one by one, over a
    mapping file's; a typo in it is named as for a mapping file."""
    from click.testing import CliRunner

    from importer.cli import main

    from .conftest import REPOSITORY
    from .test_cli_run import read_results

    source = tmp_path / "mapping-typo.csv"
    source.write_bytes((REPOSITORY / "tests" / "data" / "mapping-typo.csv").read_bytes())
    results = tmp_path / "r.csv"
    args = ["validate", str(source), "--offline", "--results", str(results),
            "--column", "Finish=endDatetime", "--column", "Owner=ignore"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    assert read_results(results)[0]["result"] == "valid"
    typo = CliRunner().invoke(main, [*args[:5], "--column", "Finsh=endDatetime"])
    assert typo.exit_code == 2
    assert "--column names column 'Finsh' for endDatetime" in typo.stderr
    assert "did you mean 'Finish'?" in typo.stderr
    bad = CliRunner().invoke(main, [*args[:5], "--column", "Finish=dueDate"])
    assert bad.exit_code == 2 and "--column Finish=dueDate: unknown field" in bad.stderr
