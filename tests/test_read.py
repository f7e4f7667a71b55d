"""Reading CSV/TSV and workbooks: encodings, delimiters, header rows, row numbers, refusals."""

from __future__ import annotations

import codecs
import os
from datetime import date, datetime, timedelta
from itertools import islice

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.errors import SourceError
from importer.read import open_source
from importer.read._text import NotFast

TASKS = "name,endDatetime,contactId\nCall,2026-12-01,12\nMail,2026-12-02,13\n"


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def rows(source):
    return [(r.number, dict(r.cells)) for r in source.rows()]


def test_utf8_bom_is_not_glued_to_the_first_header(tmp_path):
    source = open_source(write(tmp_path, "t.csv", codecs.BOM_UTF8 + TASKS.encode()))
    assert source.headers == ["name", "endDatetime", "contactId"]
    assert source.encoding == "utf-8-sig"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path, encoding):
    bom = codecs.BOM_UTF16_LE if encoding.endswith("le") else codecs.BOM_UTF16_BE
    text = TASKS.replace("Call", "Café ☕")
    source = open_source(write(tmp_path, "t.csv", bom + text.encode(encoding)))
    assert rows(source)[0] == (
        2,
        {"name": "Café ☕", "endDatetime": "2026-12-01", "contactId": "12"},
    )


def test_cp1252_smart_quotes_are_decoded_and_the_guess_reported(tmp_path):
    text = "name,endDatetime\n“Quote” for Café Noël,2026-12-01\nSmörgåsbord – ‘x’,2026-12-02\n"
    source = open_source(write(tmp_path, "t.csv", text.encode("cp1252")))
    assert [r[1]["name"] for r in rows(source)] == ["“Quote” for Café Noël", "Smörgåsbord – ‘x’"]
    assert source.encoding == "cp1252"
    assert (
        "not UTF-8: read as cp1252, the encoding whose reading shows a language"
        in (source.notes[0])
    )


def test_encoding_can_be_forced(tmp_path):
    path = write(tmp_path, "t.csv", "name,endDatetime\nÉté,2026-12-01\n".encode("latin-1"))
    assert rows(open_source(path, encoding="latin-1"))[0][1]["name"] == "Été"
    with pytest.raises(SourceError, match="unknown encoding"):
        open_source(path, encoding="klingon")


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_delimiter_is_sniffed(tmp_path, delimiter):
    text = TASKS.replace(",", delimiter).replace("Call", '"Call, then; mail | fax"')
    source = open_source(write(tmp_path, "t.txt", text))
    assert source.delimiter == delimiter
    assert rows(source)[0][1]["name"] == "Call, then; mail | fax"


def test_semicolons_in_text_do_not_fool_the_sniffer(tmp_path):
    text = "name,description\n" + "".join(f"T{n},a; b; c; d\n" for n in range(10))
    assert open_source(write(tmp_path, "t.csv", text)).delimiter == ","


def test_tsv_prefers_tab(tmp_path):
    source = open_source(write(tmp_path, "t.tsv", "name\tdue\nA\t2026-12-01\n"))
    assert source.delimiter == "\t"


def test_text_stays_as_written(tmp_path):
    path = write(tmp_path, "t.csv", "name,ref,flag\nNA,00123,null\n")
    assert rows(open_source(path)) == [(2, {"name": "NA", "ref": "00123", "flag": "null"})]


def test_title_and_blank_rows_above_the_header_are_passed_over(tmp_path):
    text = "Task export,,\nMade 2026-11-01,,\n,,\n" + TASKS + "\n\nLate,2026-12-03,14\n"
    source = open_source(write(tmp_path, "t.csv", text))
    assert source.header_row == 4
    assert [n for n, _ in rows(source)] == [5, 6, 9]


def test_row_numbers_are_the_line_where_each_record_starts(tmp_path):
    text = 'name,description\nA,"two\nlines"\nB,"three\r\nlines\nhere"\nC,x\n'
    assert [n for n, _ in rows(open_source(write(tmp_path, "t.csv", text)))] == [2, 4, 7]


def test_trailing_empty_columns_are_ignored(tmp_path):
    source = open_source(write(tmp_path, "t.csv", "name,due,,\nA,2026-12-01,,\n"))
    assert source.headers == ["name", "due"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "t.csv: the file is empty"),
        (b"\n\n  \n", "t.csv: the file is empty"),
        (b"name,endDatetime\n", "t.csv, row 1: no data rows below the header"),
        (
            b"name,Name\nA,B\n",
            "t.csv, row 1, column 'B': duplicate header 'Name' (columns A and B)",
        ),
        (b"name,due\nA,1,2\n", "t.csv, row 2, column 'C': more cells than headers: '2'"),
        (b'name,due\nA,"open quote\n', "t.csv, row 2: malformed CSV"),
        (b"name,due\x00\x01\x02", "t.csv: binary data, not text"),
    ],
)
def test_unreadable_text_is_refused_with_where(tmp_path, data, message):
    path = write(tmp_path, "t.csv", data)
    with pytest.raises(SourceError) as info:
        list(open_source(path).rows())
    assert str(info.value).startswith(str(path.parent))
    assert message in str(info.value)


def test_random_bytes_are_refused(tmp_path):
    for name in ("r.csv", "r.xlsx", "r.txt"):
        path = write(tmp_path, name, os.urandom(4096))
        with pytest.raises(SourceError):
            open_source(path)


def test_a_bad_row_deep_in_the_file_is_found_while_streaming(tmp_path):
    body = "".join(f"T{n},2026-12-01\n" for n in range(20_000))
    path = write(tmp_path, "t.csv", "name,due\n" + body + "bad,2026-12-01,extra\n")
    source = open_source(path)
    first = list(islice(source.rows(), 5))  # rows flow before the whole file is read
    assert [r.number for r in first] == [2, 3, 4, 5, 6]
    with pytest.raises(SourceError, match="row 20002"):
        list(source.rows())


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match=r"unsupported file type '\.pdf'"):
        open_source(write(tmp_path, "t.pdf", "%PDF-1.4"))
    with pytest.raises(SourceError, match=r"not a \.xlsx workbook"):
        open_source(write(tmp_path, "t.xlsx", TASKS))
    with pytest.raises(SourceError, match="--sheet applies to workbooks"):
        open_source(write(tmp_path, "t.csv", TASKS), sheet="Tasks")


def make_workbook(path, sheets):
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, table, hidden in sheets:
        sheet = workbook.create_sheet(name)
        for row in table:
            sheet.append(row)
        if hidden:
            sheet.sheet_state = "hidden"
    workbook.save(path)
    return path


def test_xlsx_with_title_row_native_dates_ids_and_booleans(tmp_path):
    path = make_workbook(
        tmp_path / "t.xlsx",
        [(
            "Tasks",
            [
                ["Tasks for December"],
                [],
                ["name", "endDatetime", "contactId", "ref", "done"],
                ["Call", datetime(2026, 12, 1, 9, 30), 12, "00123", True],
                [None, None, None, None, None],
                ["Mail", date(2026, 12, 2), 13.0, "00124", False],
            ],
            False,
        )],
    )  # fmt: skip
    source = open_source(path)
    assert (source.sheet, source.header_row) == ("Tasks", 3)
    assert rows(source) == [
        (4, {"name": "Call", "endDatetime": datetime(2026, 12, 1, 9, 30), "contactId": 12,
             "ref": "00123", "done": True}),
        (6, {"name": "Mail", "endDatetime": date(2026, 12, 2), "contactId": 13,
             "ref": "00124", "done": False}),
    ]  # fmt: skip


def test_default_sheet_is_the_first_visible_one_with_data(tmp_path):
    path = make_workbook(
        tmp_path / "t.xlsx",
        [
            ("Hidden", [["name", "due"], ["H", "2026-12-01"]], True),
            ("Empty", [], False),
            ("Tasks", [["name", "due"], ["T", "2026-12-01"]], False),
        ],
    )
    assert open_source(path).sheet == "Tasks"
    assert open_source(path, sheet="hidden").sheet == "Hidden"
    assert open_source(path, sheet="3").sheet == "Tasks"
    with pytest.raises(SourceError) as info:
        open_source(path, sheet="4")
    assert "no sheet '4'; the sheets are: 'Hidden' (hidden), 'Empty', 'Tasks'" in str(info.value)


def test_truncated_workbook_is_refused(tmp_path):
    path = make_workbook(tmp_path / "t.xlsx", [("Tasks", [["name"], ["A"]], False)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="damaged, truncated or not a spreadsheet"):
        open_source(path)


def test_workbook_column_letters_in_errors(tmp_path):
    path = make_workbook(
        tmp_path / "t.xlsx", [("S", [[None, "name", "due"], [None, "A", "x", "extra"]], False)]
    )
    with pytest.raises(SourceError) as info:
        list(open_source(path).rows())
    assert "sheet 'S', row 2, column 'D'" in str(info.value)


cell_text = st.lists(st.sampled_from([*'ab ,"\n\r', "é", "\r\n"]), max_size=6).map("".join)


def write_records(path, rows, terminator, bom=False):
    """``rows`` under a three-column header, as CSV; the data rows the record reader gives (short
    records padded to the header, blank ones left out), with their numbers."""
    import csv as csv_module
    import io

    from importer.read._text import text_records

    buffer = io.StringIO(newline="")
    writer = csv_module.writer(buffer, lineterminator=terminator)
    writer.writerow(["name", "due", "notes"])
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    return [
        (number, [*cells, "", "", ""][:3])
        for number, cells in text_records(path, "utf-8-sig", ",")
        if number > 1 and "".join(cells).strip()
    ]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.one_of(st.lists(cell_text, min_size=3, max_size=3), st.just([])), min_size=1,
        max_size=12,
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    size=st.integers(min_value=1, max_value=5),
)  # fmt: skip
def test_batches_number_rows_like_the_record_reader(tmp_path, rows, terminator, size):
    """Batches read many records at once; their row numbers must be the lines where the
    records start, as the record-by-record reader counts them."""
    from importer.read._text import text_records

    path = tmp_path / "p.csv"
    expected = write_records(path, rows, terminator)
    if not expected:
        return  # a header only: refused, as other tests show
    source = open_source(path)

    def read(fast: bool) -> list:
        source.fast = fast
        return [
            (number, list(cells))
            for batch in source.batches(size=size)
            for number, cells in zip(batch.numbers, batch.rows, strict=True)
        ]

    assert read(fast=False) == expected
    # pandas' reader gives the same rows, or steps aside for the record reader.
    try:
        fast = read(fast=True)
    except NotFast:  # only for a record that spans lines (a quoted line break), blank or not
        records = text_records(path, "utf-8", ",")
        assert any("\n" in c or "\r" in c for _, cells in records for c in cells)
    else:
        assert fast == expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.one_of(st.lists(cell_text, min_size=1, max_size=4), st.just([])), min_size=1,
        max_size=12,
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)  # fmt: skip
def test_pyarrow_s_first_pass_reads_rows_like_the_record_reader_or_steps_aside(
    tmp_path, rows, terminator, bom
):
    """The first pass of a big text file goes through pyarrow: it must give exactly the rows
    and row numbers of the record reader, or raise NotFast (then pandas' or the record reader
    reads the file)."""
    from importer.read._text import arrow_batches, text_records

    path = tmp_path / "p.csv"
    expected = write_records(path, rows, terminator, bom)
    if not expected:
        return
    try:
        source = open_source(path)
    except SourceError:
        return  # refused from its first rows (a long record), as other tests show
    try:
        got = [
            (number, list(cells))
            for batch in arrow_batches(path, source.encoding, ",", source.layout, verified=False)
            for number, cells in zip(batch.numbers, batch.rows, strict=True)
        ]
    except NotFast:
        # Only for records that are not one line with three cells: a quoted line break, a
        # short or long record, an empty line.
        records = list(text_records(path, "utf-8-sig", ","))
        assert any(
            len(cells) != 3 or any("\n" in c or "\r" in c for c in cells) for _, cells in records
        )
    else:
        assert got == expected


@pytest.mark.parametrize(
    "case", ["plain", "line break in a cell", "empty line", "long row", "carriage returns"]
)
def test_the_first_pass_of_a_big_text_file_takes_the_fastest_reader_that_reads_it_right(
    tmp_path, monkeypatch, case
):
    import importer.read as read_module

    monkeypatch.setattr(read_module, "FAST_FROM", 0)  # every file counts as big
    lines = ["name,due,notes"] + [f"Task {n},2026-12-{1 + n % 28:02d},x" for n in range(60)]
    if case == "line break in a cell":
        lines[30] = 'Task 29,2026-12-02,"two\nlines"'
    elif case == "empty line":
        lines.insert(40, "")
    elif case == "long row":
        lines[50] = "Task 49,2026-12-22,x,extra"
    path = tmp_path / "big.csv"
    end = "\r" if case == "carriage returns" else "\n"  # old Mac files
    path.write_bytes((end.join(lines) + end).encode("utf-8"))
    if case == "long row":
        with pytest.raises(SourceError, match="row 51, column 'D'"):
            open_source(path).scan()
        return
    source = open_source(path)
    count, _ = source.scan()
    assert count == 60
    expected = [
        (number, cells)
        for number, cells in read_module.text_records(path, "utf-8", ",")
        if number > 1 and "".join(cells).strip()
    ]
    got = [(n, list(c)) for b in source.batches() for n, c in zip(b.numbers, b.rows, strict=True)]
    assert got == expected
    # pyarrow (or pandas' reader) for a file of one-line records; the record reader else.
    assert (source.arrow or source.fast) == (case != "line break in a cell")


def test_text_after_a_closing_quote_is_kept_as_spreadsheets_read_it_and_told():
    """tests/data/space-after-quote.csv: row 34 has a space after two closing quotes. Excel,
    pandas and Python's csv read it (the space kept in the cell): so does the tool, naming
    the row and each column; the other rows are as they are."""
    from .conftest import REPOSITORY

    source = open_source(REPOSITORY / "tests" / "data" / "space-after-quote.csv")
    rows = {r.number: r.cells for r in source.rows()}
    assert len(rows) == 39
    assert rows[34] == {"Task": "Call the venue ", "Due": "2026-12-01 10:00",
                        "Notes": 'ask about "parking" '}  # fmt: skip
    assert rows[35]["Task"] == "Task 34"
    assert [n for n in source.notes if "closing quote" in n] == [
        "row 34, column 'Task': text after the closing quote ('\"Call the venue\" ') is kept "
        "as part of the cell, as Excel reads it",
        'row 34, column \'Notes\': text after the closing quote (\'"ask about ""parking""" \') '
        "is kept as part of the cell, as Excel reads it",
    ]
    list(source.rows())  # a second pass tells nothing twice
    assert len([n for n in source.notes if "closing quote" in n]) == 2


def test_a_big_file_with_text_after_a_closing_quote_is_read_by_the_reader_that_tells_of_it(
    tmp_path, monkeypatch
):
    """pyarrow and pandas keep the text after a closing quote without a word: a big file that
    may hold some is read by the record reader, which names each cell (a file with only a
    quote inside a field that is not quoted, an inch mark, reads the same either way)."""
    import importer.read as read_module

    from .conftest import REPOSITORY

    monkeypatch.setattr(read_module, "FAST_FROM", 0)  # every file counts as big
    source = open_source(REPOSITORY / "tests" / "data" / "space-after-quote.csv")
    count, _ = source.scan()
    assert count == 39 and not (source.arrow or source.fast)
    assert len([n for n in source.notes if "closing quote" in n]) == 2
    assert {r.number: r.cells for r in source.rows()}[34]["Task"] == "Call the venue "

    inches = tmp_path / "inches.csv"
    inches.write_text("name,notes\n" + "".join(f'Pipe {n},"a 5"" pipe"\n' for n in range(30)))
    clean = open_source(inches)
    assert clean.scan()[0] == 30 and (clean.arrow or clean.fast)  # an escaped quote: fast
    inches.write_text("name,notes\n" + "".join(f'Pipe {n},5" pipe\n' for n in range(30)))
    stray = open_source(inches)
    assert stray.scan()[0] == 30 and not (stray.arrow or stray.fast)
    assert [r.cells["notes"] for r in stray.rows()][:1] == ['5" pipe'] and not stray.notes


def test_a_quote_never_closed_is_refused_naming_its_record():
    """It would swallow every later row into one cell: refused, not read leniently."""
    from .conftest import REPOSITORY

    with pytest.raises(SourceError) as caught:
        source = open_source(REPOSITORY / "tests" / "data" / "unclosed-quote.csv")
        list(source.rows())
    assert "row 3" in str(caught.value) and "never closed" in str(caught.value)


@pytest.mark.parametrize("name", ["title-over-two-columns.csv", "title-over-two-columns.xlsx"])
def test_a_title_row_above_a_two_column_table_is_not_its_header(name):
    """tests/data/title-over-two-columns.*: one cell of title, then the header of a table of
    two columns (a narrow table: the title is half as wide as it)."""
    from .conftest import REPOSITORY

    source = open_source(REPOSITORY / "tests" / "data" / name)
    assert source.headers == ["name", "endDatetime"] and source.header_row == 2
    rows = list(source.rows())
    assert [r.number for r in rows] == [3, 4]
    assert rows[0].cells["name"] == "Call the venue"


def test_a_one_column_header_over_wider_rows_is_still_refused(tmp_path):
    """The title rule does not hide a real fault: a one-column header over rows of values."""
    path = tmp_path / "one.csv"
    path.write_text("name\nCall,2026-12-01\nSend,2026-12-02\n", encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        list(open_source(path).rows())
    assert "more cells than headers" in str(caught.value)


def test_a_formula_with_no_saved_value_is_named_not_read_as_empty(tmp_path):
    """tests/data/unsaved-formulas.xlsx, written by openpyxl (which computes no formula): the
    name of row 3, its notes and the due date of row 4 are formulas with no saved value. Each
    row says which column and what to do; saved-formulas.xlsx, the same with values saved as
    Excel does, reads as those values."""
    from click.testing import CliRunner

    from importer.cli import main

    from .conftest import REPOSITORY
    from .test_cli_run import read_results

    data = REPOSITORY / "tests" / "data"
    rows = {}
    for name in ("unsaved-formulas.xlsx", "saved-formulas.xlsx"):
        results = tmp_path / f"{name}.results.csv"
        outcome = CliRunner().invoke(
            main, ["validate", str(data / name), "--offline", "--results", str(results)]
        )
        rows[name] = {int(r["row"]): r for r in read_results(results)}
        if name == "unsaved-formulas.xlsx":
            assert outcome.exit_code == 1
            assert "3 cells hold a formula with no saved value" in outcome.stderr
    unsaved = rows["unsaved-formulas.xlsx"]
    assert unsaved[2]["result"] == "valid"
    assert (unsaved[3]["result"], unsaved[3]["error_code"], unsaved[3]["field"]) == (
        "invalid", "UNSAVED_FORMULA", "name"
    )  # fmt: skip
    assert unsaved[3]["message"] == (
        'a formula with no saved value (=CONCATENATE("Send ","the quote")): open and save the '
        "file in Excel or LibreOffice; also Notes: a formula with no saved value (=A2): open "
        "and save the file in Excel or LibreOffice"
    )
    assert unsaved[4]["field"] == "endDatetime" and "(=B2+1)" in unsaved[4]["message"]
    saved = rows["saved-formulas.xlsx"]
    assert [r["result"] for r in saved.values()] == ["valid"] * 3
    assert saved[3]["name"] == "Send the quote" and saved[3]["Notes"] == "Call the venue"


@pytest.mark.parametrize(
    ("name", "encoding", "column", "text"),
    [
        ("greek-iso-8859-7.csv", "cp1253", "name", "Λεωνιδας Παπαδοπουλος"),
        ("french-iso-8859-1.csv", "cp1252", "Notes", "Réserver la salle à côté"),
        ("polish-cp1250.csv", "cp1250", "Notes", "Zapytać o źródło"),
    ],
)
def test_a_legacy_encoding_is_read_in_the_language_its_text_shows(name, encoding, column, text):
    """Greek ISO-8859-7 was read as cp1251 (Лещнйдбт), French ISO-8859-1 as cp1250: the
    encoding chosen is the one whose reading shows a language (cp1253 reads ISO-8859-7's
    Greek letters alike), and the run says which."""
    from .conftest import REPOSITORY

    source = open_source(REPOSITORY / "tests" / "data" / name)
    assert source.encoding == encoding
    assert next(source.rows()).cells[column] == text
    assert any(f"read as {encoding}" in n for n in source.notes)


def test_a_text_that_reads_cleanly_two_ways_is_refused_with_each_reading():
    """tests/data/turkish-cp1254.csv: 'ğ ş ı' in cp1254 is 'š ž ż' in cp1257, common letters
    too; nothing in so little text decides (cp1252's 'ð þ ý' is ruled out: letters of few
    languages). Refused (exit 2) with a line read each way and the --encoding to give; given,
    it reads."""
    from .conftest import REPOSITORY

    path = REPOSITORY / "tests" / "data" / "turkish-cp1254.csv"
    with pytest.raises(SourceError) as caught:
        open_source(path)
    message = str(caught.value)
    assert "reads cleanly in more than one encoding, differently" in message
    assert "as cp1254 (" in message and "'Teklif gönder ğ ş ı,2026-12-02'" in message
    assert "as cp1257 (" in message and "'Teklif gönder š ž ż,2026-12-02'" in message
    assert "--encoding cp1254 or --encoding cp1257" in message
    chosen = open_source(path, encoding="cp1254")
    assert list(chosen.rows())[1].cells["name"] == "Teklif gönder ğ ş ı"


def test_a_short_file_showing_no_language_is_not_guessed_quietly(tmp_path):
    """One Russian word in cp1251 read as cp1252 gave 'Ìîñêâà' with only a warning. With no
    language to show, a reading that mixes scripts in a word ('Cafй') is wrong; two clean,
    different readings are refused with each; one clean reading is taken."""
    moscow = write(tmp_path, "ru.csv", "name,endDatetime\nМосква,2026-12-01\n".encode("cp1251"))
    with pytest.raises(SourceError) as caught:
        open_source(moscow)
    assert "as cp1251: 'Москва,2026-12-01'" in str(caught.value)
    assert "--encoding cp1251" in str(caught.value)
    cafe = write(tmp_path, "fr.csv", "name,endDatetime\nCafé Noël,2026-12-01\n".encode("cp1252"))
    source = open_source(cafe)
    assert source.encoding == "cp1252" and next(source.rows()).cells["name"] == "Café Noël"


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("xor-protected.xls", "an .xls obfuscated by Excel's XOR method"),
        ("rc4-protected.xls", "an encrypted .xls"),
    ],
)
def test_a_password_protected_xls_is_refused_saying_so_never_read(name, how):
    """tests/data/xor-protected.xls: an .xls whose FILEPASS record says it is obfuscated by
    Excel's XOR method, its records' data scrambled (made from the calamine corpus's date.xls).
    calamine reads such a file as if it were not protected (into scrambled cells) or fails on
    it ("Codepage 5EEA not found"), which was told as a damaged file. rc4-protected.xls: the
    same file saying RC4 encryption."""
    from .conftest import REPOSITORY

    with pytest.raises(SourceError) as caught:
        open_source(REPOSITORY / "tests" / "data" / name)
    said = str(caught.value)
    assert f"the workbook is protected with a password ({how})" in said
    assert "Encrypt with Password" in said and "damaged" not in said


def test_an_xlsm_with_an_excel_4_macro_sheet_is_read_without_it_and_says_so():
    """tests/data/excel4-macro-sheet.xlsm: a sheet of tasks and an Excel 4 macro sheet
    (xl/macrosheets/), which calamine refuses the whole workbook for ("Unrecognized
    sheet:type"). The tasks are read; the macro sheet is left out, and named."""
    from .conftest import REPOSITORY

    source = open_source(REPOSITORY / "tests" / "data" / "excel4-macro-sheet.xlsm")
    assert source.sheet == "Tasks"
    assert [r.cells for r in source.rows()] == [
        {"name": "Call the venue", "endDatetime": "2026-12-01 10:00"}
    ]
    assert "'Macro1': an Excel 4 macro sheet, not read (macros never run)" in source.notes
    with pytest.raises(SourceError, match="no sheet 'Macro1'; the sheets are: 'Tasks'"):
        open_source(REPOSITORY / "tests" / "data" / "excel4-macro-sheet.xlsm", sheet="Macro1")


def test_a_cell_longer_than_excel_allows_is_refused_by_its_row_and_column():
    """The reader's child finds the longest text of each batch of rows at once, and names the
    cell that is too long (in the second batch of rows here). (python-calamine cuts an XLSX's
    cells to Excel's 32,767 characters itself; other readers' may be longer.)"""
    import io
    import types

    from importer.read import _child

    rows = [[f"Task {n}", 2.0, "x" * 40_000 if n == 4500 else "notes"] for n in range(5000)]
    sheet = types.SimpleNamespace(start=(0, 1), iter_rows=lambda: iter(rows))
    with pytest.raises(_child.Refused) as info:
        _child.spool("Tasks", sheet, io.BytesIO(), {"cell_chars": 32_767})
    said = str(info.value)
    assert "40,000 characters, over the limit of 32,767" in said
    assert info.value.where == {"sheet": "Tasks", "row": 4501, "column": "D"}, info.value.where
    fine = io.BytesIO()
    assert _child.spool("Tasks", sheet, fine, {"cell_chars": 40_000}) == 5000


_CELLS = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["", " ", "High", "0", "1"]),
    st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1]),
    st.booleans(),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 3)),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 1, 3)),
    st.times(),
    st.timedeltas(max_value=timedelta(days=2), min_value=timedelta(0)),
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(_CELLS, max_size=5), max_size=30), batch=st.sampled_from([1, 3, 4096])
)
def test_the_spool_gives_back_every_cell_as_it_was(rows, batch):
    """The child writes a sheet's rows by columns, a batch at a time, and writes equal texts
    and dates once: every cell comes back of its own type and value (0.0 and -0.0, True and 1
    and 1.0 kept apart), each short row padded with empty cells to the widest of its batch."""
    import io
    import types

    from importer.read import _child, _workbook

    sheet = types.SimpleNamespace(start=(0, 0), iter_rows=lambda: iter([list(r) for r in rows]))
    out = io.BytesIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_child, "BATCH", batch)
        assert _child.spool("Tasks", sheet, out, {"cell_chars": 100}) == len(rows)
    out.seek(0)
    read = []
    while True:
        try:
            count, columns = _workbook._Cells(out).load()
        except EOFError:
            break
        read.extend(map(list, zip(*columns, strict=True)) if columns else [[]] * count)
    expected = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        width = max(map(len, chunk))
        expected.extend(r + [""] * (width - len(r)) for r in chunk)

    def typed(cells):
        return [(type(c), repr(c)) for c in cells]

    assert list(map(typed, read)) == list(map(typed, expected))


@pytest.mark.parametrize("sheet", [None, "Tasks", "tasks", "2"])
def test_formulas_with_no_saved_value_are_found_on_whichever_sheet_is_read(tmp_path, sheet):
    """The formulas are looked for while the sheet is read, in the sheet the reader will most
    likely pick; when it picks another (the first sheet is blank, or the sheet is asked for by
    position or in another case), they are looked for in the one it read."""
    book = openpyxl.Workbook()
    book.active.title = "Cover"
    tasks = book.create_sheet("Tasks")
    tasks.append(["Task Name", "Due Date"])
    tasks.append(["Call", "2026-03-12"])
    tasks.append(['=CONCATENATE("Send ","it")', "2026-03-13"])
    if sheet == "Tasks":  # the cover sheet holds something, so only the name picks Tasks
        book["Cover"].append(["Tasks export"])
    path = tmp_path / "two.xlsx"
    book.save(path)
    source = open_source(path, sheet=sheet)
    assert source.sheet == "Tasks"
    assert any("1 cells hold a formula with no saved value" in n for n in source.notes)
    assert [type(r.cells["Task Name"]).__name__ for r in source.rows()] == ["str", "Unsaved"]


def test_a_small_workbooks_rows_are_read_from_its_spool_once(tmp_path, monkeypatch):
    """A full pass over a small workbook keeps its rows: the next pass takes them instead of
    reading the spool again, before any correction (each copy of the source applies its own)."""
    from importer.read import _workbook

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Task Name", "Due Date"])
    for n in range(5000):
        sheet.append([f"Task {n}", datetime(2026, 3, 1 + n % 28, 9)])
    path = tmp_path / "small.xlsx"
    book.save(path)
    reads = []
    spooled_chunks = _workbook.Spooled.chunks

    def counted(self):
        reads.append(1)
        return spooled_chunks(self)

    monkeypatch.setattr(_workbook.Spooled, "chunks", counted)
    source = open_source(path)
    opened = len(reads)  # (the header is found in the first rows)
    assert source.scan()[0] == 5000 and len(reads) == opened + 1
    first = [(b.numbers, [list(r) for r in b.rows]) for b in source.batches()]
    fixed = source.reading(patches={7: {0: "Fixed"}})
    again = [(b.numbers, [list(r) for r in b.rows]) for b in fixed.batches()]
    assert len(reads) == opened + 1  # neither pass read the spool again
    assert sum(len(n) for n, _ in first) == 5000 and first[0][1][5] == ["Task 5", first[0][1][5][1]]
    assert again[0][1][5] == ["Fixed", first[0][1][5][1]] and again[1:] == first[1:]
    big = open_source(path)
    monkeypatch.setattr("importer.read.KEEP_CELLS", 100)
    big.scan()
    before = len(reads)
    list(big.batches())
    assert len(reads) == before + 1  # a workbook over the limit is read from its spool again


_SHEET_CELLS = st.one_of(
    st.sampled_from(["", " ", None, "x", "Call", 0.0, 2.0, True, datetime(2026, 3, 1, 9)]),
    st.text(max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(_SHEET_CELLS, min_size=0, max_size=5), max_size=25),
    header_row=st.integers(0, 4),
    positions=st.sampled_from([(0,), (0, 1), (0, 1, 2), (1, 2), (0, 2)]),
    batch=st.sampled_from([2, 5, 4096]),
)
def test_a_sheets_batches_by_column_are_its_batches_by_row(rows, header_row, positions, batch):
    """A chunk of a sheet's spool is taken by its columns when it can be (its first column
    filled, its columns past the header blank): its batch is the one made row by row from the
    same cells, and a stray value is refused the same way."""
    from pathlib import Path

    from importer.read._table import Layout, batch_of, sheet_batches

    layout = Layout(header_row, positions, tuple(f"h{p}" for p in positions))
    chunks, expected_chunks, first = [], [], 1
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        width = max(map(len, chunk))
        padded = [r + [""] * (width - len(r)) for r in chunk]
        chunks.append((len(chunk), list(map(list, zip(*padded, strict=True)))))
        numbers = list(range(first, first + len(chunk)))
        first += len(chunk)
        keep = [i for i, n in enumerate(numbers) if n > header_row]
        if keep:
            expected_chunks.append(([numbers[i] for i in keep], [padded[i] for i in keep]))

    def made(batches):
        try:
            return [(b.numbers, [list(r) for r in b.rows]) for b in batches]
        except SourceError as exc:
            return str(exc)

    where = {"path": Path("t.xlsx"), "sheet": "Tasks"}
    expected = made(b for n, c in expected_chunks if (b := batch_of(n, c, layout, **where)).numbers)
    assert made(sheet_batches(iter(chunks), layout, **where)) == expected


def _tasks_workbook(path, rows, long_at=None):
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Tasks")
    sheet.append(["Task Name", "Notes"])
    for n in range(rows):
        sheet.append([f"Task {n}", "x" * 200 if n + 2 == long_at else "notes"])
    book.save(path)
    return path


def test_a_refusal_deep_in_a_workbook_comes_after_the_rows_before_it(tmp_path):
    """The first pass reads a workbook's rows while the child writes them: a cell the child
    refuses in a later batch stops the pass there, naming its row and column, after the rows
    before it; one in the first batch stops the opening."""
    from importer.read import ReadLimits

    limits = ReadLimits(cell_chars=100)
    deep = _tasks_workbook(tmp_path / "deep.xlsx", 10_000, long_at=9_000)
    source = open_source(deep, limits=limits)
    seen = []
    with pytest.raises(SourceError) as info:
        for batch in source.batches():
            seen.extend(batch.numbers)
    assert (info.value.row, info.value.column, info.value.sheet) == (9000, "B", "Tasks")
    assert "200 characters, over the limit of 100" in str(info.value)
    assert seen == list(range(2, 8193))  # the two whole batches before it, and no row after
    with pytest.raises(SourceError) as again:  # a second pass meets it again
        source.scan()
    assert again.value.row == 9000
    early = _tasks_workbook(tmp_path / "early.xlsx", 10_000, long_at=50)
    with pytest.raises(SourceError) as info:
        open_source(early, limits=limits)
    assert (info.value.row, info.value.column) == (50, "B")


_FAKE_CHILD = """
import json, os, pickle, signal, sys, time
job = json.loads(sys.argv[1])
print(json.dumps({"sheet": "Tasks", "rows": 3, "column_offset": 0, "date1904": False,
                  "notes": []}), flush=True)
with open(job["spool"], "wb") as out:
    pickle.dump((2, [["Name", "Task 1"], ["Due", "2026-12-01"]]), out)
    out.flush()
print("+", flush=True)
if "{how}" == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
if "{how}" == "stuck":
    time.sleep(60)
print(json.dumps({"rows": 2}), flush=True)
"""


@pytest.mark.parametrize("how", ["killed", "stuck", "fine"])
def test_a_child_that_stops_while_it_writes_is_told_after_its_rows(tmp_path, monkeypatch, how):
    """A child killed while it writes (by its memory limit, say), or stuck past its time, is
    a SourceError that names the limit, after the batches it wrote whole; a stuck one is
    stopped. One that ends well gives its rows and no error."""
    from importer.read import ReadLimits, _workbook

    child = tmp_path / "child.py"
    child.write_text(_FAKE_CHILD.replace("{how}", how))
    monkeypatch.setattr(_workbook, "_CHILD", child)
    monkeypatch.setattr(_workbook, "_GRACE", 0)
    book = _tasks_workbook(tmp_path / f"{how}.xlsx", 1)
    read = _workbook.read_workbook(book, None, ReadLimits(seconds=2))
    rows = []
    if how == "fine":
        rows = list(read.iter_rows())
        assert rows == [["Name", "Due"], ["Task 1", "2026-12-01"]]
        return
    with pytest.raises(SourceError) as info:
        rows.extend(read.iter_rows())
    assert rows == [["Name", "Due"], ["Task 1", "2026-12-01"]]
    said = str(info.value)
    assert ("more than 3,072 MB" in said) if how == "killed" else ("more than 2 s" in said), said
    assert read._writing is not None and read._writing._process.poll() is not None


def test_a_workbook_let_go_while_its_child_writes_stops_the_child(tmp_path, monkeypatch):
    from importer.read import _workbook

    child = tmp_path / "child.py"
    child.write_text(_FAKE_CHILD.replace("{how}", "stuck"))
    monkeypatch.setattr(_workbook, "_CHILD", child)
    read = _workbook.read_workbook(_tasks_workbook(tmp_path / "t.xlsx", 1), None)
    assert read._writing is not None
    process = read._writing._process
    assert process.poll() is None
    _workbook._recent.clear()
    folder = read._folder
    del read
    import gc

    gc.collect()
    assert process.poll() is not None and not folder.exists()


@pytest.mark.parametrize("length", [32_767, 32_768, 40_000])
def test_a_workbook_cell_the_reader_would_cut_short_is_refused_by_its_row_and_column(
    tmp_path, length
):
    """python-calamine gives at most 32,767 characters of a workbook's text cell, and cuts a
    longer one to that, silently (a workbook written by a program other than Excel may hold
    more): a cell that comes back that long is refused, naming its row and column, rather than
    sent cut short."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Tasks"
    sheet.append(["Task Name", "Description"])
    for n in range(5000):
        sheet.append([f"Task {n}", "d" * length if n == 4600 else "notes"])
    path = tmp_path / "long.xlsx"
    book.save(path)
    with pytest.raises(SourceError) as info:
        open_source(path).scan()
    assert (info.value.row, info.value.column, info.value.sheet) == (4602, "B", "Tasks")
    assert "32,767 characters or more" in str(info.value) and "CSV" in str(info.value)
    fine = tmp_path / "fine.xlsx"
    sheet["B4602"] = "d" * 32_766
    book.save(fine)
    assert open_source(fine).scan()[0] == 5000
