"""The first five minutes: the template, the sample data, the mapping examples, the help."""

from __future__ import annotations

import shutil
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from importer.cli import main
from importer.fields import PRIORITIES, STATUSES
from importer.map import load_mapping_file, map_columns
from importer.profiles import PROFILES
from importer.template import COLUMNS, mapping_example, write_template

from .test_cli_run import env_for, read_results

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
TEMPLATES = ROOT / "templates"


def invoke(server, *args: object):
    return CliRunner().invoke(main, [*map(str, args)], env=env_for(server))


def validations(sheet) -> dict[str, tuple[str, str | None, str]]:
    """Column header → (type, list formula, cell range) of each data validation."""
    headers = {cell.column_letter: cell.value for cell in sheet[1]}
    found = {}
    for check in sheet.data_validations.dataValidation:
        ranges = str(check.sqref)
        found[headers[ranges[0]]] = (check.type, check.formula1, ranges)
    return found


def test_the_template_has_dropdowns_date_cells_an_example_and_instructions(tmp_path):
    outcome = CliRunner().invoke(main, ["template", str(tmp_path / "t.xlsx")])
    assert outcome.exit_code == 0, outcome.output
    book = openpyxl.load_workbook(tmp_path / "t.xlsx")
    assert book.sheetnames == ["Tasks", "Instructions"]
    sheet = book["Tasks"]
    headers = [c.value for c in sheet[1]]
    assert headers == [c.header for c in COLUMNS]
    checks = validations(sheet)
    assert checks["Priority"][:2] == ("list", '"' + ",".join(PRIORITIES) + '"')
    assert checks["Status"][:2] == ("list", '"' + ",".join(STATUSES.values()) + '"')
    assert checks["Priority"][2] == "C2:C5001"
    assert checks["Due Date"][0] == "date"
    assert checks["Company ID"][0] == "whole"
    due = sheet.cell(row=2, column=headers.index("Due Date") + 1)
    assert due.is_date and "yyyy" in due.number_format
    later = sheet.cell(row=500, column=headers.index("Due Date") + 1)
    assert later.number_format == due.number_format  # typed-in dates show as dates too
    assert sheet["A2"].value  # the example row
    text = " ".join(str(c) for row in book["Instructions"].iter_rows(values_only=True)
                    for c in row if c)  # fmt: skip
    for column in COLUMNS:
        assert column.header in text and column.required in text
    assert "one parent" in text and "24396" in text


def test_the_template_maps_without_options_and_its_example_row_imports(sandbox, tmp_path):
    mapping = map_columns([c.header for c in COLUMNS], path="t.xlsx")
    assert {c.field: c.header for c in COLUMNS} == mapping.columns
    assert mapping.warnings == ()
    for suffix in (".xlsx", ".csv"):
        path = write_template(tmp_path / f"t{suffix}")
        outcome = invoke(sandbox, "run", path, "--new-run")
        assert outcome.exit_code == 0, outcome.output
        assert [r["result"] for r in read_results(tmp_path / f"t.results{suffix}")] == ["created"]
    assert {t["name"] for t in sandbox.tasks()} == {COLUMNS[0].example}


def test_the_committed_templates_are_what_the_command_writes(tmp_path):
    write_template(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_bytes() == (TEMPLATES / "tasks_template.csv").read_bytes()
    write_template(tmp_path / "t.xlsx")
    made, committed = (
        openpyxl.load_workbook(p) for p in (tmp_path / "t.xlsx", TEMPLATES / "tasks_template.xlsx")
    )
    for name in made.sheetnames:
        assert list(made[name].values) == list(committed[name].values)
    assert validations(made["Tasks"]) == validations(committed["Tasks"])
    for name in PROFILES:
        committed_toml = (TEMPLATES / f"mapping-{name}.toml").read_text(encoding="utf-8")
        assert committed_toml == mapping_example(name), "run: python -m importer.template"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_mapping_example_reads_its_crm_export(name):
    mapping_file = load_mapping_file(TEMPLATES / f"mapping-{name}.toml")
    assert mapping_file.profile == name
    headers = list(PROFILES[name].columns)
    mapping = map_columns(headers, path="export.csv", mapping_file=mapping_file)
    assert {"name", "endDatetime"} <= set(mapping.columns)


def test_the_sample_csv_imports_with_real_error_codes(sandbox, tmp_path):
    shutil.copy(SAMPLES / "tasks.csv", tmp_path)
    outcome = invoke(sandbox, "run", tmp_path / "tasks.csv")
    assert outcome.exit_code == 1, outcome.output
    rows = read_results(tmp_path / "tasks.results.csv")
    assert len(rows) == 20
    assert sum(r["result"] == "created" for r in rows) == 15
    assert {r["error_code"] for r in rows if r["result"] == "invalid"} == {
        "23016", "23017", "24390", "24396",
    }  # fmt: skip


def test_the_sample_workbook_with_a_title_row_and_date_cells_imports(sandbox, tmp_path):
    shutil.copy(SAMPLES / "tasks.xlsx", tmp_path)
    outcome = invoke(sandbox, "run", tmp_path / "tasks.xlsx")
    assert outcome.exit_code == 0, outcome.output
    rows = read_results(tmp_path / "tasks.results.xlsx")
    assert [r["row"] for r in rows] == ["4", "5", "6", "7", "8", "9"]  # below the title
    stored = {t["name"]: t for t in sandbox.tasks()}
    assert stored["Book the photographer"]["endDatetime"].startswith("2026-12-04 09:00:00")


def test_the_salesforce_export_imports_with_its_profile(sandbox, tmp_path):
    shutil.copy(SAMPLES / "salesforce_tasks.csv", tmp_path)
    outcome = invoke(sandbox, "run", tmp_path / "salesforce_tasks.csv", "--profile", "salesforce")
    assert outcome.exit_code == 0, outcome.output
    statuses = {t["name"]: t["status"] for t in sandbox.tasks()}
    assert statuses["Confirm the block of rooms"] == 2  # "Waiting on someone else"
    assert statuses["Invoice the deposit"] == 4
    assert "--key 'Id'" in outcome.output


def test_the_night_pair_shows_key(sandbox, tmp_path):
    for name in ("night1.csv", "night2.csv"):
        shutil.copy(SAMPLES / name, tmp_path)
    assert invoke(sandbox, "run", tmp_path / "night1.csv", "--key", "Legacy Id").exit_code == 0
    outcome = invoke(sandbox, "run", tmp_path / "night2.csv", "--key", "Legacy Id", "--json")
    assert outcome.exit_code == 0, outcome.output
    assert '"counts": {"unchanged": 7, "updated": 3, "created": 2}' in outcome.stdout
    assert len(sandbox.tasks()) == 12


@pytest.mark.parametrize(
    "command", ["run", "validate", "template", "undo", "runs", "ping", "sandbox", "serve"]
)
def test_every_command_s_help_shows_examples(command):
    outcome = CliRunner().invoke(main, [command, "--help"])
    assert outcome.exit_code == 0
    assert "Example" in outcome.output and "task-import" in outcome.output


def test_a_config_file_holds_credentials_and_defaults_but_never_the_secret(sandbox, tmp_path):
    source = tmp_path / "c.csv"
    source.write_text("Legacy Id,name,endDatetime\nA1,Call,2026-12-01\n", encoding="utf-8")
    config = tmp_path / "ivvy.toml"
    config.write_text(
        f'api_key = "{sandbox.config.key}"\nbase_url = "{sandbox.base_url}"\n'
        f'[run]\nkey = "Legacy Id"\njson = true\nresults = "{tmp_path / "out.csv"}"\n',
        encoding="utf-8",
    )
    env = {"IVVY_API_SECRET": sandbox.config.secret, "IVVY_API_KEY": None, "IVVY_BASE_URL": None}
    outcome = CliRunner().invoke(main, ["--config", str(config), "run", str(source)], env=env)
    assert outcome.exit_code == 0, outcome.output
    assert '"counts": {"created": 1}' in outcome.stdout  # --json from the file
    assert (tmp_path / "out.csv").exists()  # --results from the file
    again = CliRunner().invoke(main, ["--config", str(config), "run", str(source)], env=env)
    assert '"counts": {"unchanged": 1}' in again.stdout  # --key from the file

    config.write_text('api_key = "k"\napi_secret = "s"\n', encoding="utf-8")
    refused = CliRunner().invoke(main, ["--config", str(config), "run", str(source)], env=env)
    assert refused.exit_code == 2 and "holds a secret" in refused.output
    config.write_text("[run]\nspeed = 3\n", encoding="utf-8")
    unknown = CliRunner().invoke(main, ["--config", str(config), "run", str(source)], env=env)
    assert unknown.exit_code == 2 and "no option 'speed'" in unknown.output
