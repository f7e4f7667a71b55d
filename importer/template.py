"""The import template: a sheet a person fills in, which the importer reads without options.

``task-import template PATH`` writes it as ``.xlsx`` (human column names the mapper knows,
dropdowns for status and priority, date cells formatted, whole-number checks on the ids, an example
row and an Instructions sheet) or as ``.csv`` (the same columns and example row).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from .errors import UsageError
from .fields import PRIORITIES, STATUS_SYNONYMS, STATUSES
from .results import atomic_write

#: Rows the dropdowns and formats cover.
ROWS = 5000
DATE_FORMAT = "yyyy-mm-dd hh:mm"


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    required: str
    accepted: str
    example: object = None
    width: int = 16


COLUMNS: tuple[Column, ...] = (
    Column("Task Name", "name", "yes, to create", "text", "Call the client about the gala", 36),
    Column("Due Date", "endDatetime", "yes, to create",
           "a date cell, or text such as 2026-12-01 14:30 or 01/12/2026 (day or month first: "
           "decided from the column, or --date-order); times are in --timezone (default UTC); "
           "a date without a time gets 09:00", datetime(2026, 12, 1, 14, 30), 18),
    Column("Priority", "priority", "no", "low, medium or high (Normal = medium)", "high", 12),
    Column("Status", "status", "no",
           ", ".join(STATUSES.values()) + " (or 0-4; also "
           + ", ".join(w for words in STATUS_SYNONYMS.values() for w in words[1:3]) + "…)",
           "Not Started", 14),
    Column("Description", "description", "no", "free text", "Confirm numbers and dietary needs",
           36),
    Column("Contact ID", "contactId", "no: one parent at most",
           "an iVvy contact id, or the contact's e-mail", 12),
    Column("Company ID", "companyId", "no: one parent at most (a contact may go with it)",
           "an iVvy company id"),
    Column("Lead ID", "leadId", "no: one parent at most",
           "an iVvy lead or opportunity id (an opportunity needs Venue ID)"),
    Column("Venue ID", "venueId", "with an opportunity", "an iVvy venue id (or --venue-id)"),
    Column("Assigned To", "assignedUserId", "no", "an iVvy user id, or the user's e-mail",
           "user1@example.com", 20),
    Column("Task ID", "id", "only to update",
           "the iVvy id of a task to update; empty creates a new task"),
)  # fmt: skip

PARENT_RULE = (
    "A task belongs to at most one parent: a contact, a company, or a lead/opportunity. The one "
    "pair allowed is a contact with a company: the contact is added to the company and the task "
    "is filed under the company. A lead together with a contact or a company is refused (24396)."
)

INSTRUCTIONS = (
    "Fill in one row per task on the Tasks sheet (the example row may be replaced), then:",
    "  task-import validate tasks.xlsx    checks every row and sends nothing",
    "  task-import run tasks.xlsx         imports; tasks.results.xlsx says what became of each row",
    "Try it without an account first: add --sandbox to either command.",
    "Columns may be left out or reordered; their names are matched without regard to case or "
    "spaces. Columns the importer does not know are kept in the results.",
)


def write_template(path: Path) -> Path:
    """Write the template as ``path`` says (``.xlsx`` or ``.csv``, in a folder that exists);
    the path written."""
    suffix = path.suffix.lower()
    if not path.parent.is_dir():
        raise UsageError(f"{path}: the folder {path.parent} does not exist (it is not created)")
    if suffix == ".csv":
        with atomic_write(path, encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([c.header for c in COLUMNS])
            writer.writerow([_text(c.example) for c in COLUMNS])
        return path
    if suffix != ".xlsx":
        raise UsageError(f"the template is written as .xlsx or .csv, not {path.suffix!r}")
    book = _workbook()
    book.save(path)
    return path


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "" if value is None else str(value)


def _workbook() -> Workbook:
    book = Workbook()
    sheet = book.active
    sheet.title = "Tasks"
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    sheet.append([c.header for c in COLUMNS])
    sheet.append([c.example for c in COLUMNS])
    sheet.freeze_panes = "A2"
    for index, column in enumerate(COLUMNS, start=1):
        letter = get_column_letter(index)
        header = sheet.cell(row=1, column=index)
        header.font, header.fill = bold, fill
        sheet.column_dimensions[letter].width = column.width
        cells = f"{letter}2:{letter}{ROWS + 1}"
        if column.field == "priority":
            _dropdown(sheet, cells, list(PRIORITIES), "Priority")
        elif column.field == "status":
            _dropdown(sheet, cells, list(STATUSES.values()), "Status")
        elif column.field == "endDatetime":
            for row in range(2, ROWS + 2):
                sheet.cell(row=row, column=index).number_format = DATE_FORMAT
            check = DataValidation(
                type="date",
                operator="greaterThan",
                formula1="DATE(1990,1,1)",
                allow_blank=True,
                errorStyle="warning",
                showErrorMessage=True,
                errorTitle="Due Date",
                error="Not a date: the importer also reads text such as 2026-12-01 14:30.",
                promptTitle="Due Date",
                prompt="Date and time the task is due (in the zone given with --timezone).",
            )
            check.add(cells)
            sheet.add_data_validation(check)
        elif column.field.endswith("Id") or column.field == "id":
            check = DataValidation(
                type="whole" if column.field not in ("contactId", "assignedUserId") else None,
                operator="greaterThan",
                formula1="0",
                allow_blank=True,
                errorStyle="warning",
                showErrorMessage=True,
                error="An iVvy id is a whole number.",
                promptTitle=column.header,
                prompt=column.accepted,
            )
            check.add(cells)
            sheet.add_data_validation(check)
    _instructions(book.create_sheet("Instructions"))
    return book


def _dropdown(sheet: object, cells: str, values: list[str], title: str) -> None:
    check = DataValidation(
        type="list",
        formula1='"' + ",".join(values) + '"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle=title,
        error=f"Choose one of: {', '.join(values)}.",
        promptTitle=title,
        prompt=", ".join(values),
    )
    check.add(cells)
    sheet.add_data_validation(check)  # type: ignore[attr-defined]


def _instructions(sheet: object) -> None:
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    rows = [
        ("Importing tasks into iVvy",),
        *((line,) for line in INSTRUCTIONS),
        (),
        ("Column", "iVvy field", "Required", "Accepted values"),
        *((c.header, c.field, c.required, c.accepted) for c in COLUMNS),
        (),
        ("Parents", PARENT_RULE),
        ("Updating", "A row with a Task ID updates that task: only the filled cells change."),
        ("Results", "Every row once, with result (created, updated, invalid, failed…), task_id, "
                    "error_code, field and message; fix the rows it lists and run the results "
                    "sheet with --only failed,invalid."),
    ]  # fmt: skip
    for row in rows:
        sheet.append(list(row))  # type: ignore[attr-defined]
    sheet["A1"].font = Font(bold=True, size=14)  # type: ignore[index]
    header_row = len(INSTRUCTIONS) + 3
    for cell in sheet[header_row]:  # type: ignore[index]
        cell.font = bold
    for letter, width in zip("ABCD", (16, 16, 26, 90), strict=True):
        sheet.column_dimensions[letter].width = width  # type: ignore[attr-defined]
    for row in sheet.iter_rows(min_row=header_row):  # type: ignore[attr-defined]
        for cell in row:
            cell.alignment = wrap


def mapping_example(name: str) -> str:
    """A ``--mapping`` file for the export of CRM ``name``: its profile, written out so that a
    person sees what it decides and where to change it."""
    from .map import toml_string
    from .profiles import PROFILES

    profile = PROFILES[name]
    lines = [
        f"# Mapping for a {profile.title}.",
        f"# Use it with: task-import run export.csv --mapping mapping-{name}.toml"
        + (f' --key "{profile.key}"' if profile.key else ""),
        "# The profile below already decides everything listed; the lines are here to be changed.",
        f'profile = "{name}"',
        "",
        '[columns]  # source column = iVvy field (or "ignore")',
    ]
    lines += [f"{toml_string(column)} = {toml_string(f)}" for column, f in profile.columns.items()]
    lines += [
        "# The export's own ids are not iVvy ids: add a column of iVvy ids to set a parent, e.g.",
        '# "iVvy Contact ID" = "contactId"',
        "",
        "[status]  # the export's words = an iVvy status (0-4 or its label)",
    ]
    lines += [
        f"{toml_string(word)} = {toml_string(STATUSES[code] if code is not None else 'ignore')}"
        for word, code in profile.status.items()
    ]
    if profile.priority:
        lines += ["", "[priority]  # the export's words = low, medium or high"]
        lines += [
            f"{toml_string(word)} = {toml_string(value or '')}"
            for word, value in profile.priority.items()
        ]
    lines += [
        "",
        "[options]  # defaults for options not given on the command line",
        f'timezone = "{profile.timezone or "Australia/Sydney"}"'
        + ("  # the export writes UTC" if profile.timezone else "  # the zone of its times"),
        '# date_order = "dmy"',
        '# default_time = "09:00"',
    ]
    return "\n".join(lines) + "\n"


def write_all(folder: Path) -> list[Path]:
    """Every template file: the XLSX and CSV templates and a mapping example per profile."""
    from .profiles import PROFILES

    written = [
        write_template(folder / "tasks_template.xlsx"),
        write_template(folder / "tasks_template.csv"),
    ]
    for name in PROFILES:
        path = folder / f"mapping-{name}.toml"
        path.write_text(mapping_example(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m importer.template templates/
    import sys

    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "templates")):
        print(written)
