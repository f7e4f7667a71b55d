"""The hostile corpus: files built to crash, hang or exhaust a reader, or to make it read what
it should not. ``python tests/data/hostile/make.py [FOLDER]`` writes them all (the small ones
are kept in this folder; the large ones, up to 1 GiB, are made by the tests in a temporary
folder, by :func:`make`).

Each file's name says what it is; :data:`FILES` says which are large.
"""

from __future__ import annotations

import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1 << 30

XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
SML = "application/vnd.openxmlformats-officedocument.spreadsheetml."
PKG = "http://schemas.openxmlformats.org/package/2006/"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
CONTENT_TYPES = (
    f'{XML}<Types xmlns="{PKG}content-types">'
    f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{SML}sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{SML}worksheet+xml"/>'
    f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SML}sharedStrings+xml"/>'
    "</Types>"
)
RELS = (
    f'{XML}<Relationships xmlns="{PKG}relationships">'
    f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
WORKBOOK = (
    f'{XML}<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    f'xmlns:r="{REL}"><sheets><sheet name="Tasks" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    f'{XML}<Relationships xmlns="{PKG}relationships">'
    f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
MAIN = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
HEADER_ROW = (
    '<row r="1"><c r="A1" t="inlineStr"><is><t>name</t></is></c>'
    '<c r="B1" t="inlineStr"><is><t>endDatetime</t></is></c></row>'
)


def sheet(rows: str, *, dimension: str | None = None, doctype: str = "") -> str:
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{doctype}'
        f"<worksheet {MAIN}>{dim}<sheetData>{HEADER_ROW}{rows}</sheetData></worksheet>"
    )


def strings(items: str, *, count: str = "1", doctype: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{doctype}'
        f'<sst {MAIN} count="{count}" uniqueCount="{count}">{items}</sst>'
    )


def workbook(path: Path, sheet_xml: str | bytes, sst: str | None = None, extra=()) -> Path:
    """A workbook of these parts (dated alike: the same file every time it is made)."""
    parts = [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", RELS),
        ("xl/workbook.xml", WORKBOOK),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
        ("xl/worksheets/sheet1.xml", sheet_xml),
        ("xl/sharedStrings.xml", sst if sst is not None else strings("", count="0")),
        *extra,
    ]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, data in parts:
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            book.writestr(info, data)
    return path


LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">'
        for n in range(1, 10)
    )
    + "]>"
)
XXE = '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
SHARED_CELL = '<row r="2"><c r="A2" t="s"><v>0</v></c><c r="B2"><v>46000</v></c></row>'


def far_cell(path: Path) -> Path:
    far = '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>far</t></is></c></row>'
    return workbook(path, sheet(far, dimension="A1:XFD1048576"))


def far_cell_undeclared(path: Path) -> Path:
    """The far cell with no dimension: only the parse can find how far it reaches."""
    far = '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>far</t></is></c></row>'
    return workbook(path, sheet(far))


def laughs_in_sheet(path: Path) -> Path:
    row = '<row r="2"><c r="A2" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    return workbook(path, sheet(row, doctype=LAUGHS))


def laughs_in_strings(path: Path) -> Path:
    return workbook(path, sheet(SHARED_CELL), strings("<si><t>&lol9;</t></si>", doctype=LAUGHS))


def external_entity(path: Path) -> Path:
    return workbook(path, sheet(SHARED_CELL), strings("<si><t>&xxe;</t></si>", doctype=XXE))


def strings_count_bomb(path: Path) -> Path:
    """A shared-string table that claims four billion strings (a reader that reserves room
    for them first asks for a hundred gigabytes)."""
    return workbook(path, sheet(SHARED_CELL), strings("<si><t>A</t></si>", count="4294967295"))


def path_traversal(path: Path) -> Path:
    row = '<row r="2"><c r="A2" t="inlineStr"><is><t>A</t></is></c></row>'
    return workbook(path, sheet(row), extra=[("../../x", "escaped"), ("/etc/y", "absolute")])


def truncated(path: Path) -> Path:
    row = '<row r="2"><c r="A2" t="inlineStr"><is><t>A</t></is></c></row>'
    data = workbook(path, sheet(row)).read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def corrupt(path: Path) -> Path:
    """A zip whose directory is sound and whose sheet's compressed bytes are noise."""
    rows = "".join(
        f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>Task {n}</t></is></c></row>'
        for n in range(2, 400)
    )
    data = bytearray(workbook(path, sheet(rows)).read_bytes())
    start = data.find(b"xl/worksheets/sheet1.xml") + 40
    for offset in range(start, min(start + 600, len(data))):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def _deflated(head: bytes, body: bytes, repeat: int, tail: bytes) -> tuple[list[bytes], int, int]:
    """``head``, ``body`` × ``repeat`` and ``tail`` as one raw deflate stream: its pieces, the
    CRC-32 and the size of what it inflates to. A block of ``body`` repeats is compressed once
    and its bytes repeated: after a full flush the compressor starts afresh, so each block's
    compressed bytes are the same (compressing a gibibyte each time took six seconds a file)."""
    block = body * max(1, (1 << 20) // max(1, len(body)))
    count, rest = divmod(len(body) * repeat, len(block)) if body else (0, 0)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    pieces = [packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)]
    if count:
        packed = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
        again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
        assert packed == again, "a block compressed twice came out differently"
        pieces += [packed] * count
    last = body * (rest // len(body)) if body else b""
    pieces.append(packer.compress(last + tail) + packer.flush(zlib.Z_FINISH))
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(last + tail, crc)
    return pieces, crc, len(head) + count * len(block) + len(last) + len(tail)


def _write_zip(path: Path, parts: list[tuple[str, list[bytes], int, int]]) -> None:
    """A zip of ``parts`` (name, raw deflate pieces, CRC-32, inflated size), written by hand:
    zipfile cannot take bytes already compressed."""
    when = (0, (2026 - 1980) << 9 | 12 << 5 | 1)  # DOS time and date: 2026-12-01 00:00
    central = []
    with path.open("wb") as out:
        for name, pieces, crc, size in parts:
            offset = out.tell()
            packed = sum(len(p) for p in pieces)
            named = name.encode()
            fixed = (20, 0, 8, *when, crc, packed, size, len(named))
            out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fixed, 0) + named)
            for piece in pieces:
                out.write(piece)
            central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, *fixed,
                                       0, 0, 0, 0, 0, offset) + named)  # fmt: skip
        start = out.tell()
        listing = b"".join(central)
        out.write(listing)
        out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(parts), len(parts),
                              len(listing), start, 0))  # fmt: skip


def _bomb(path: Path, sheet_parts: tuple[bytes, bytes, int, bytes], sst: str | None) -> Path:
    parts = []
    for name, text in (("[Content_Types].xml", CONTENT_TYPES), ("_rels/.rels", RELS),
                       ("xl/workbook.xml", WORKBOOK), ("xl/_rels/workbook.xml.rels",
                       WORKBOOK_RELS)):  # fmt: skip
        parts.append((name, *_deflated(text.encode(), b"", 0, b"")))
    parts.append(("xl/worksheets/sheet1.xml", *_deflated(*sheet_parts)))
    parts.append(("xl/sharedStrings.xml", *_deflated((sst or strings("", count="0")).encode(),
                                                      b"", 0, b"")))  # fmt: skip
    _write_zip(path, parts)
    return path


def rows_bomb(path: Path) -> Path:
    """A sheet of 1 GiB: eleven million rows, every one alike, in a few megabytes."""
    row = b'<row><c t="inlineStr"><is><t>A task</t></is></c><c><v>46000</v></c></row>'
    head = sheet("").split("<sheetData>")[0].encode() + b"<sheetData>"
    return _bomb(path, (head, row, GIB // len(row), b"</sheetData></worksheet>"), None)


def cell_bomb(path: Path) -> Path:
    """One cell of 1 GiB (a run of one letter), in about a megabyte."""
    head = (sheet("").split("<sheetData>")[0] + "<sheetData>" + HEADER_ROW).encode() + (
        b'<row r="2"><c r="A2" t="inlineStr"><is><t>'
    )
    tail = b"</t></is></c></row></sheetData></worksheet>"
    return _bomb(path, (head, b"A" * 4096, GIB // 4096, tail), None)


def long_line(path: Path) -> Path:
    """A CSV of one line of 1 GiB (no line break anywhere)."""
    with path.open("wb") as handle:
        handle.write(b"name,endDatetime\n")
        chunk = b"x" * (1 << 20)
        for _ in range(1024):
            handle.write(chunk)
    return path


def nul_bytes(path: Path) -> Path:
    path.write_bytes(b"name,endDatetime\nA\x00B,2026-12-01\n" * 50)
    return path


def bad_utf8(path: Path) -> Path:
    """Declared UTF-8 (its byte-order mark) and then bytes that are not."""
    path.write_bytes(b"\xef\xbb\xbfname,endDatetime\nCaf\xe9 \xff\xfe,2026-12-01\n" * 20)
    return path


def wide(path: Path) -> Path:
    """A CSV of 100,000 columns."""
    names = ["name", "endDatetime", *(f"c{n}" for n in range(99_998))]
    row = ["A", "2026-12-01", *("" for _ in range(99_998))]
    path.write_text(",".join(names) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    return path


#: Every file: its name, how it is made, and whether it is large (made by the tests).
FILES: dict[str, tuple[Callable[[Path], Path], bool]] = {
    "far_cell.xlsx": (far_cell, False),
    "far_cell_undeclared.xlsx": (far_cell_undeclared, False),
    "laughs_in_sheet.xlsx": (laughs_in_sheet, False),
    "laughs_in_strings.xlsx": (laughs_in_strings, False),
    "external_entity.xlsx": (external_entity, False),
    "strings_count_bomb.xlsx": (strings_count_bomb, False),
    "path_traversal.xlsx": (path_traversal, False),
    "truncated.xlsx": (truncated, False),
    "corrupt.xlsx": (corrupt, False),
    "nul_bytes.csv": (nul_bytes, False),
    "bad_utf8.csv": (bad_utf8, False),
    "rows_bomb.xlsx": (rows_bomb, True),
    "cell_bomb.xlsx": (cell_bomb, True),
    "long_line.csv": (long_line, True),
    "wide.csv": (wide, True),
}


def make(name: str, folder: Path) -> Path:
    """The file ``name``: the kept copy for a small one, else made in ``folder`` (once)."""
    build, large = FILES[name]
    if not large:
        return HERE / name
    path = folder / name
    if not path.exists():
        build(path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, (build, large) in FILES.items():
        if large and out == HERE:
            continue  # the large ones are not kept
        build(out / name)
        print(name, (out / name).stat().st_size)
