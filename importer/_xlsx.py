"""A streaming XLSX writer for the results sheet: rows go straight into the zip as SpreadsheetML
as they come (a million rows are never held), every text as an inline string.

openpyxl's write-only workbook builds an object per cell and writes about 60,000 cells a second,
so a 100,000-row results sheet (1.6 million cells) took 25 s, twenty times the read of the same
file. This writer makes one string per row and deflates at level 1: the same sheet in about a
second. It writes only what a results sheet needs (ECMA-376 Part 1, the parts Excel requires):
named sheets, a bold header row frozen at the top, text, numbers, booleans, dates and times.

No cell it writes can be evaluated: a text is an inline string (``t="inlineStr"``), which a
spreadsheet shows as it is, even when it starts with ``=``; the writer has no way to write a
formula at all.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import compress, count, repeat
from numbers import Integral, Real
from operator import add, attrgetter, is_, not_, or_, sub, truediv
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

#: Characters XML cannot hold at all (a lone CR it would read as a line feed).
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Excel's day 0 (its 1900 date system, with the phantom 29 February 1900 behind it).
_EPOCH = datetime(1899, 12, 30)
_DAY = 86400.0
#: Style numbers (``cellXfs`` in styles.xml, below): bold, datetime, date, time.
_BOLD, _DATETIME, _DATE, _TIME = 1, 2, 3, 4
#: The rows written to the zip at once.
_CHUNK = 2000

_MAIN = "application/vnd.openxmlformats-officedocument"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_MAIN}.spreadsheetml.sheet.main+xml"/>'
    f'<Override PartName="/xl/styles.xml" ContentType="{_MAIN}.spreadsheetml.styles+xml"/>'
    f'<Override PartName="/docProps/app.xml" ContentType="{_MAIN}.extended-properties+xml"/>'
    "{sheets}</Types>"
)
_SHEET_TYPE = (
    '<Override PartName="/xl/worksheets/sheet{n}.xml" '
    f'ContentType="{_MAIN}.spreadsheetml.worksheet+xml"/>'
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/>'
    f'<Relationship Id="rId2" Type="{_RELS}/extended-properties" Target="docProps/app.xml"/>'
    "</Relationships>"
)
_APP = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
    "<Application>ivvy-task-importer</Application></Properties>"
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    f'xmlns:r="{_RELS}">'
    "<bookViews><workbookView/></bookViews><sheets>{sheets}</sheets></workbook>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    "{sheets}"
    f'<Relationship Id="rIdStyles" Type="{_RELS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
_SHEET_LINK = (
    f'<Relationship Id="rId{{n}}" Type="{_RELS}/worksheet" Target="worksheets/sheet{{n}}.xml"/>'
)
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd\\ h:mm:ss"/>'
    '<numFmt numFmtId="165" formatCode="yyyy\\-mm\\-dd"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="21" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_SHEET_START = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    f'xmlns:r="{_RELS}">'
    "{views}<sheetData>"
)
_FROZEN = (
    '<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" '
    'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft"/></sheetView>'
    "</sheetViews>"
)
_SHEET_END = "</sheetData>{drawing}</worksheet>"
_DRAWING_TYPES = (
    '<Override PartName="/xl/drawings/drawing{n}.xml" ContentType="{main}.drawing+xml"/>'
)
_CHART_TYPE = (
    '<Override PartName="/xl/charts/chart{n}.xml" ContentType="{main}.drawingml.chart+xml"/>'
)
_SHEET_DRAWING_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELS}/drawing" Target="../drawings/drawing{{n}}.xml"/>'
    "</Relationships>"
)


_DRAWINGML = "http://schemas.openxmlformats.org/drawingml/2006"
_CHART_XML = (
    f'<chartSpace xmlns:a="{_DRAWINGML}/main" xmlns="{_DRAWINGML}/chart"><chart><title><tx><rich>'
    "<a:bodyPr /><a:p><a:pPr><a:defRPr /></a:pPr><a:r><a:t>{title}</a:t></a:r></a:p></rich>"
    '</tx></title><plotArea><barChart><barDir val="bar" /><grouping val="clustered" /><ser>'
    '<idx val="0" /><order val="0" /><spPr><a:ln><a:prstDash val="solid" /></a:ln></spPr><cat>'
    "<strRef><f>{names}</f></strRef></cat><val><numRef><f>{numbers}</f></numRef></val></ser>"
    '<dLbls><showLegendKey val="0" /><showVal val="1" /><showCatName val="0" />'
    '<showSerName val="0" /><showPercent val="0" /></dLbls><gapWidth val="150" />'
    '<axId val="10" /><axId val="100" /></barChart><catAx><axId val="10" /><scaling>'
    '<orientation val="minMax" /></scaling><delete val="0" /><axPos val="l" />'
    '<majorTickMark val="none" /><minorTickMark val="none" /><crossAx val="100" />'
    '<lblOffset val="100" /></catAx><valAx><axId val="100" /><scaling>'
    '<orientation val="minMax" /></scaling><delete val="0" /><axPos val="l" /><majorGridlines />'
    '<majorTickMark val="none" /><minorTickMark val="none" /><crossAx val="10" /></valAx>'
    '</plotArea><plotVisOnly val="1" /><dispBlanksAs val="gap" /></chart></chartSpace>'
)
_DRAWING = (
    f'<wsDr xmlns:a="{_DRAWINGML}/main" xmlns:c="{_DRAWINGML}/chart" xmlns:r="{_RELS}" '
    f'xmlns="{_DRAWINGML}/spreadsheetDrawing">{{}}</wsDr>'
)
#: A chart 14 cm wide and 7 cm high (in EMU), its corner on a cell.
_ANCHOR = (
    "<oneCellAnchor><from><col>{column}</col><colOff>0</colOff><row>{row}</row><rowOff>0"
    '</rowOff></from><ext cx="5040000" cy="2520000" /><graphicFrame><nvGraphicFramePr>'
    '<cNvPr id="{n}" name="Chart {n}" /><cNvGraphicFramePr /></nvGraphicFramePr><xfrm />'
    f'<a:graphic><a:graphicData uri="{_DRAWINGML}/chart"><c:chart r:id="rId{{n}}" />'
    "</a:graphicData></a:graphic></graphicFrame><clientData /></oneCellAnchor>"
)
_DRAWING_RELS = (
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{}'
    "</Relationships>"
)
_CHART_LINK = (
    f'<Relationship Type="{_RELS}/chart" Target="/xl/charts/chart{{chart}}.xml" Id="rId{{n}}" />'
)


@dataclass(frozen=True)
class BarChart:
    """A chart of horizontal bars, one series: its title, and the cells of its bars' names
    (text) and of their numbers (``'Sheet'!$A$2:$A$5``)."""

    title: str
    names: str
    numbers: str

    def xml(self) -> str:
        """The chart's part, as openpyxl writes a BarChart of ``type="bar"`` with its values
        shown, no legend, and both axes."""
        return _CHART_XML.format(
            title=xml_text(self.title), names=xml_text(self.names), numbers=xml_text(self.numbers)
        )


def _cell_at(reference: str) -> tuple[int, int]:
    """The column and row (from 0) of a cell such as ``D18``."""
    found = re.fullmatch(r"([A-Z]+)(\d+)", reference)
    if found is None:
        raise ValueError(f"not a cell: {reference!r}")
    column = 0
    for letter in found.group(1):
        column = column * 26 + ord(letter) - 64
    return column - 1, int(found.group(2)) - 1


def xml_text(text: str) -> str:
    """``text`` as XML character data: escaped, with what XML cannot hold replaced by U+FFFD
    and line ends as line feeds (XML reads a lone CR as one anyway)."""
    if text.isprintable():  # no control character, surrogate or non-character: most text
        if "&" in text or "<" in text or ">" in text:
            return escape(text)
        return text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return escape(_NOT_XML.sub("\ufffd", text))


def _serial(value: datetime | date | time) -> float:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=None) - _EPOCH) / timedelta(days=1)
    if isinstance(value, date):
        return float((value - _EPOCH.date()).days)
    return (value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6) / _DAY


def cell(value: Any, style: int = 0) -> str:
    """One ``<c>`` element (no reference: a cell follows the one before it)."""
    kind = value.__class__
    if kind is str:
        if not value:
            return "<c/>"
        styled = f' s="{style}"' if style else ""
        # Excel trims the spaces at either end of a text unless told to keep them.
        keep = ' xml:space="preserve"' if value[0].isspace() or value[-1].isspace() else ""
        return f'<c t="inlineStr"{styled}><is><t{keep}>{xml_text(value)}</t></is></c>'
    if value is None:
        return "<c/>"
    if kind is bool:
        return f'<c t="b"><v>{int(value)}</v></c>'
    if kind is int:
        return f"<c><v>{value}</v></c>"
    if kind is float:
        if not math.isfinite(value):  # no number of a sheet's is NaN or infinite
            return cell(str(value), style)
        return f"<c><v>{value!r}</v></c>"
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # a sheet's dates have no zone: written as the text it is
            return cell(value.isoformat(sep=" "), style)
        return f'<c s="{_DATETIME}"><v>{_serial(value)!r}</v></c>'
    if isinstance(value, date):
        return f'<c s="{_DATE}"><v>{_serial(value)!r}</v></c>'
    if isinstance(value, time):
        return f'<c s="{_TIME}"><v>{_serial(value)!r}</v></c>'
    if isinstance(value, Integral):  # numpy's and other number types
        return cell(int(value), style)
    if isinstance(value, Real):
        return cell(float(value), style)
    return cell(str(value), style)


_TEXT_START, _TEXT_END = '<c t="inlineStr"><is><t>', "</t></is></c>"
_KEPT_CELL = '<c t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>'.format
_DATETIME_CELL = f'<c s="{_DATETIME}"><v>{{}}</v></c>'.format
_ZONE = attrgetter("tzinfo")
#: The kinds of value whose equal values make the same cell.
_SAME_WHEN_EQUAL = frozenset({str, int, bool, datetime, date, time, type(None)})
#: The cells of the naive datetimes made lately.
_MOMENTS: dict[datetime, str] = {}


def cells(values: Sequence[Any]) -> list[str]:
    """:func:`cell` of each value of a column, made a column at a time: a column of repeated
    values makes each distinct value once; a column of text (printable), of whole numbers or of
    dates and times is made in C, with one search of the column for what needs escaping or
    keeping its spaces; any other column a type at a time. A test holds it to :func:`cell`."""
    kinds = set(map(type, values))
    if kinds == {type(None)}:
        return ["<c/>"] * len(values)
    if kinds <= _SAME_WHEN_EQUAL and (len(kinds) == 1 or kinds == {str, type(None)}):
        # (One kind alone as keys: True == 1. And equal values make the same cell, unlike
        # 0.0 and -0.0, or Decimal("1.0") and Decimal("1.00").)
        distinct = set(values)
        if len(distinct) * 2 < len(values):  # each distinct value made once
            each = list(distinct)
            of = dict(zip(each, cells(each), strict=True))
            return list(map(of.__getitem__, values))
    if kinds == {int}:
        return list(map(add, map(add, repeat("<c><v>"), map(str, values)), repeat("</v></c>")))
    if kinds <= _DAYS and _naive(values, kinds):
        # A sheet's dates and times (a date cell at midnight, a date and time otherwise), each
        # remembered: a sheet's due dates repeat, from batch to batch.
        out: list[Any] = list(map(_MOMENTS.get, values))
        misses = list(compress(count(), map(is_, out, repeat(None))))
        if misses:
            missed = [values[i] for i in misses]
            made = _moment_cells(missed)
            for i, one in zip(misses, made, strict=True):
                out[i] = one
            if len(_MOMENTS) > 200_000:
                _MOMENTS.clear()
            _MOMENTS.update(zip(missed, made, strict=True))
        return out
    if len(kinds) > 1 and kinds != {str, type(None)}:
        return by_kind(values, cells)
    if kinds != {str} or not _printable(values):
        return list(map(cell, values))
    texts = values
    together = "\0".join(values)  # (printable text holds no NUL)
    if "&" in together or "<" in together or ">" in together:
        escaped = {v: xml_text(v) for v in set(values)}
        texts = list(map(escaped.__getitem__, values))
    made = list(map(add, map(add, repeat(_TEXT_START), texts), repeat(_TEXT_END)))
    # Excel trims the spaces at either end of a text unless told to keep them (the only space
    # printable text holds is " ").
    if "\0 " in together or " \0" in together or together[:1] == " " or together[-1:] == " ":
        spaced = map(or_, map(str.startswith, values, repeat(" ")),
                     map(str.endswith, values, repeat(" ")))  # fmt: skip
        for i in compress(count(), spaced):
            made[i] = _KEPT_CELL(texts[i])
    if "" in values:
        for i in compress(count(), map(not_, values)):
            made[i] = "<c/>"
    return made


_DAYS = frozenset({datetime, date})


def _naive(values: Sequence[Any], kinds: set[type]) -> bool:
    """Whether the dates and times among ``values`` (of ``kinds``) have no zone."""
    moments = values if kinds == {datetime} else compress(values, map(is_, map(type, values),
                                                                     repeat(datetime)))  # fmt: skip
    return all(map(is_, map(_ZONE, moments), repeat(None)))


def _moment_cells(values: list[Any]) -> list[Any]:
    """The cells of naive datetimes (their serial numbers, days since Excel's day 0, made in C)
    and dates."""
    if set(map(type, values)) != {datetime}:
        return by_kind(values, lambda one: _moment_cells(one) if one[0].__class__ is datetime
                       else list(map(cell, one)))  # fmt: skip
    serials = map(truediv, map(sub, values, repeat(_EPOCH)), repeat(timedelta(days=1)))
    return list(map(_DATETIME_CELL, map(repr, serials)))


def by_kind(values: Sequence[Any], make: Callable[[list[Any]], Sequence[Any]]) -> list[Any]:
    """``make`` of a column's values of each type apart (each of one type), put back in place."""
    classes = list(map(type, values))
    out: list[Any] = [None] * len(values)
    for kind in set(classes):
        places = list(compress(count(), map(is_, classes, repeat(kind))))
        for i, made in zip(places, make([values[i] for i in places]), strict=True):
            out[i] = made
    return out


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _printable(values: Sequence[str]) -> bool:
    """Whether every text is printable (``str.isprintable``): for ASCII, in one pass."""
    together = "".join(values)
    if together.isascii():
        return not together.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return all(map(str.isprintable, values))


class XlsxWriter:
    """Sheets written one after the other (:meth:`sheet`, then :meth:`rows`), then
    :meth:`close`. The workbook is the file at ``path`` (or the binary file given), whole once
    :meth:`close` returns."""

    def __init__(self, path: Path | IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        self._names: list[str] = []
        self._part: _Behind | None = None
        #: The charts of each sheet (by its number, from 1), with the cell of their corner.
        self._charts: dict[int, list[tuple[BarChart, str]]] = {}

    def sheet(self, name: str, *, frozen_header: bool = False) -> None:
        """Begin the sheet ``name`` (ending the one before)."""
        self._end_sheet()
        self._names.append(name)
        part = f"xl/worksheets/sheet{len(self._names)}.xml"
        self._part = _Behind(self._zip.open(part, "w", force_zip64=True))
        self._part.write(_SHEET_START.format(views=_FROZEN if frozen_header else "").encode())

    def header(self, names: Sequence[Any]) -> None:
        """A row of bold cells."""
        self._write("<row>" + "".join(cell(v, _BOLD) for v in names) + "</row>")

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows of cells, written at once (give a few thousand at a time)."""
        self._write("".join(["<row>" + "".join(map(cell, r)) + "</row>" for r in rows]))

    def columns(self, columns: Sequence[Sequence[Any]]) -> None:
        """Rows given as their columns (of equal length), written at once: the same as
        :meth:`rows` of the rows, each column's cells made together (:func:`cells`)."""
        made = [cells(c) for c in columns]
        if made and made[0]:
            lines = map("".join, zip(*made, strict=True))
            self._write("<row>" + "</row><row>".join(lines) + "</row>")

    def chart(self, chart: BarChart, anchor: str) -> None:
        """A bar chart on the sheet begun last, its top left corner at the cell ``anchor``."""
        if self._part is None:
            raise RuntimeError("no sheet begun")
        self._charts.setdefault(len(self._names), []).append((chart, anchor))

    def _write(self, text: str) -> None:
        if self._part is None:
            raise RuntimeError("no sheet begun")
        self._part.write(text.encode("utf-8", "surrogatepass"))

    def _end_sheet(self) -> None:
        if self._part is not None:
            drawn = len(self._names) in self._charts
            self._part.write(
                _SHEET_END.format(drawing='<drawing r:id="rId1"/>' if drawn else "").encode()
            )
            self._part.close()
            self._part = None

    def close(self) -> None:
        """End the last sheet and write the parts that name them."""
        self._end_sheet()
        numbers = range(1, len(self._names) + 1)
        types = "".join(_SHEET_TYPE.format(n=n) for n in numbers) + self._write_charts()
        sheets = "".join(
            f'<sheet name="{xml_text(name[:31])}" sheetId="{n}" r:id="rId{n}"/>'
            for n, name in zip(numbers, self._names, strict=True)
        )
        links = "".join(_SHEET_LINK.format(n=n) for n in numbers)
        for name, text in (
            ("[Content_Types].xml", _CONTENT_TYPES.format(sheets=types)),
            ("_rels/.rels", _ROOT_RELS),
            ("docProps/app.xml", _APP),
            ("xl/workbook.xml", _WORKBOOK.format(sheets=sheets)),
            ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS.format(sheets=links)),
            ("xl/styles.xml", _STYLES),
        ):
            self._zip.writestr(name, text)
        self._zip.close()

    def _write_charts(self) -> str:
        """The drawings and charts of the sheets that have some (as openpyxl writes them);
        their content types."""
        types, made = [], 0
        for drawn, (sheet, charts) in enumerate(sorted(self._charts.items()), 1):
            anchors, links = [], []
            for n, (chart, anchor) in enumerate(charts, 1):
                made += 1
                self._zip.writestr(f"xl/charts/chart{made}.xml", chart.xml())
                types.append(_CHART_TYPE.format(n=made, main=_MAIN))
                column, row = _cell_at(anchor)
                anchors.append(_ANCHOR.format(column=column, row=row, n=n))
                links.append(_CHART_LINK.format(n=n, chart=made))
            self._zip.writestr(f"xl/drawings/drawing{drawn}.xml", _DRAWING.format("".join(anchors)))
            self._zip.writestr(f"xl/drawings/_rels/drawing{drawn}.xml.rels",
                               _DRAWING_RELS.format("".join(links)))  # fmt: skip
            self._zip.writestr(f"xl/worksheets/_rels/sheet{sheet}.xml.rels",
                               _SHEET_DRAWING_RELS.format(n=drawn))  # fmt: skip
            types.append(_DRAWING_TYPES.format(n=drawn, main=_MAIN))
        return "".join(types)

    def discard(self) -> None:
        """Stop writing (the caller removes the file)."""
        try:
            if self._part is not None:
                self._part.close(discard=True)
        finally:
            self._zip.close()


class _Behind:
    """A zip member written by a thread of its own: deflating (zlib, which lets go of the GIL)
    runs beside the Python that makes the next rows. Writes keep their order; an error of the
    thread is raised by the next write, or by :meth:`close`."""

    def __init__(self, part: IO[bytes]) -> None:
        self._part = part
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xlsx-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._part.write(data)
                except BaseException as exc:  # (raised by the next write, or by close)
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self, *, discard: bool = False) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is not None and not discard:
                raise self._error
        finally:
            self._part.close()
