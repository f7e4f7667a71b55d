"""CSV, TSV and TXT: the encoding (BOM, UTF-8, else a detected legacy encoding, reported), the
delimiter (sniffed among comma, semicolon, tab and pipe), and the records with the line where
each starts."""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import charset_normalizer

from ..errors import AmbiguousEncoding, SourceError
from ._limits import LIMITS
from ._table import Batch, Layout, Record, batch_of

DELIMITERS = (",", ";", "\t", "|")
#: Byte order marks, longest first (UTF-32's LE mark begins with UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: When a guess is a tie, the encodings people's spreadsheets most often come in win.
_PREFERRED = ("cp1252", "iso8859_15", "latin_1", "cp1250", "mac_roman")
_CHUNK = 1 << 20
#: The longest line a text source may have, by default (:class:`~._limits.ReadLimits`).
LINE_LIMIT = LIMITS.line_chars
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f\v\x1a")


def detect_encoding(
    path: Path, forced: str | None = None, line_limit: int = LINE_LIMIT
) -> tuple[str, str | None]:
    """``(encoding, note)``: the note says when the encoding was guessed rather than known.
    SourceError for a file that is not text, or has a line longer than ``line_limit``."""
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
    if forced:
        try:
            codecs.lookup(forced)
        except LookupError:
            raise SourceError(f"unknown encoding {forced!r}", path=path) from None
        _check_decodes(path, forced, line_limit)
        return forced, None
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            _check_decodes(path, encoding, line_limit)
            return encoding, None
    _refuse_binary(path, head)
    if _decodes(path, "utf-8", line_limit) is None:
        return "utf-8", None
    try:
        guess = _guess_legacy(path)
    except Ambiguous as ambiguous:
        told = "; ".join(
            f"as {encoding}" + (f" ({language})" if language else "") + f": {line!r}"
            for encoding, language, line in ambiguous.readings
        )
        choices = " or ".join(f"--encoding {e}" for e, _, _ in ambiguous.readings)
        raise AmbiguousEncoding(
            f"the text is not UTF-8, and it reads cleanly in more than one encoding, "
            f"differently: {told}. Give the one that reads right: {choices} (or save the file "
            "as 'CSV UTF-8')",
            path=path,
            readings=ambiguous.readings,
        ) from None
    if guess is None:
        raise SourceError(
            "the text is not UTF-8 and no single encoding fits it: save it as 'CSV UTF-8' "
            "or give --encoding",
            path=path,
        )
    return guess, (
        f"{path.name} is not UTF-8: read as {guess}, the encoding whose reading shows a language "
        "best (give --encoding to choose another)"
    )


def encoding_choices(path: Path, first: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The encodings that read the text file at ``path`` without an error or a control
    character, each with its
    reading of the first line that differs between them (``first`` first, then UTF-8 and the
    likely code pages); encodings that read the file alike are one choice. At most 12."""
    with path.open("rb") as handle:
        sample = handle.read(_CHUNK)
    lines = sample.splitlines()
    line = next((n for n, raw in enumerate(lines) if not raw.isascii()), 0)
    choices: list[tuple[str, str]] = []
    seen: set[str] = set()
    whole = len(sample) < _CHUNK
    for encoding in dict.fromkeys([*first, "utf-8", *_LIKELY]):
        try:  # the first megabyte (the run checks the whole file in the encoding chosen)
            text = codecs.getincrementaldecoder(encoding)().decode(sample, final=whole)
        except (UnicodeDecodeError, LookupError):
            continue
        if _C1.search(text) or text in seen:
            continue
        seen.add(text)
        shown = text.splitlines()
        choices.append((encoding, (shown[line] if line < len(shown) else "")[:80]))
        if len(choices) >= 12:
            break
    return choices


def _refuse_binary(path: Path, head: bytes) -> None:
    nul = head.find(b"\x00")
    if nul >= 0:
        raise SourceError(
            f"binary data, not text (a NUL byte at offset {nul}): is this really a CSV file?",
            path=path,
        )
    if head and sum(head.count(bytes([b])) for b in _CONTROL) > len(head) // 20:
        raise SourceError("binary data, not text: is this really a CSV file?", path=path)


def _decodes(path: Path, encoding: str, line_limit: int = LINE_LIMIT) -> int | None:
    """None when the whole file decodes; else the offset of the first byte that does not.
    SourceError for a line longer than ``line_limit`` bytes (found in the same pass, in
    bounded memory: no reader ever holds such a line)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    run = 0  # bytes since the last line break
    lines = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            run = run + len(chunk) if last < 0 else len(chunk) - last - 1
            if run > line_limit:
                raise SourceError(
                    f"a line of more than {line_limit // (1 << 20)} MB without a line break, "
                    "over the limit: this is not a table of tasks (or its line breaks were lost)",
                    path=path,
                    row=lines + 1,
                )
            lines += chunk.count(b"\n")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return offset + exc.start
    return None


def _check_decodes(path: Path, encoding: str, line_limit: int = LINE_LIMIT) -> None:
    bad = _decodes(path, encoding, line_limit)
    if bad is not None:
        raise SourceError(f"byte {bad} of the file is not valid {encoding}", path=path)


#: The legacy encodings spreadsheets and CRMs write text in (Windows code pages, the ISO
#: sets and the East Asian ones): a guess is one of these whenever one is a candidate. Others
#: (Mac, KOI8, DOS code pages) fit almost any bytes: guessed only when no likely one is a
#: candidate, and read when given with --encoding.
_LIKELY = (
    "cp1252", "iso8859_15", "latin_1", "cp1250", "iso8859_2", "cp1251", "cp1253", "iso8859_7",
    "cp1254", "iso8859_9", "cp1255", "iso8859_8", "cp1256", "cp1257", "cp1258", "cp874",
    "shift_jis", "cp932", "euc_jp", "gb18030", "gbk", "big5", "euc_kr", "cp949",
)  # fmt: skip
_C1 = re.compile("[\x80-\x9f]")
#: Letters of few languages (Slovak's ĺ ŕ, Icelandic's ð þ, Baltic ones…): a reading full of
#: them is most likely bytes of another code page, read wrong.
_RARE_LETTERS = "ĺŕţđðþėōīūŗļķņģĸŀĹŔŢĐÐÞĖŌĪŪŖĻĶŅĢ"
#: A character outside ASCII that is no letter, between two letters: a symbol inside a word.
_BETWEEN_LETTERS = re.compile(r"(?<=[^\W\d_])[^\x00-\x7f](?=[^\W\d_])")
#: How much more a guess's language must show than another reading's for the guess to stand.
_LANGUAGE_MARGIN = 0.03


#: The single-byte code pages among :data:`_LIKELY`.
_SINGLE_BYTE = frozenset(e for e in _LIKELY if e.startswith(("cp12", "iso8859", "latin", "cp874")))


@dataclass(frozen=True)
class _Unscored:
    """An encoding to try when no language shows through: every one scored alike."""

    encoding: str
    coherence: float = 0.0
    chaos: float = 0.0
    language: str | None = None


class Ambiguous(Exception):
    """Two encodings read the text cleanly, and differently: the person must choose."""

    def __init__(self, readings: list[tuple[str, str | None, str]]) -> None:
        super().__init__("ambiguous")
        self.readings = readings  # (encoding, language, a sample line read so)


def _guess_legacy(path: Path) -> str | None:
    with path.open("rb") as handle:
        sample = handle.read(_CHUNK)
    matches = list(charset_normalizer.from_bytes(sample))
    if all(m.coherence == 0 for m in matches) and _decodes(path, "cp1252") is None:
        # No language shows through (a short file): the single-byte code pages alone (a
        # multi-byte encoding fits a few bytes by chance), cp1252 (Excel's on a Western
        # Windows) first; refused when another reads the text cleanly and differently.
        return _by_language(path, sample, [_Unscored(e) for e in _LIKELY if e in _SINGLE_BYTE])
    if not matches:
        return None
    likely = [m for m in matches if m.encoding in _LIKELY]
    if likely:
        return _by_language(path, sample, likely)
    best = min(m.chaos for m in matches)
    close = [m.encoding for m in matches if m.chaos <= best + 0.01]
    ranked = sorted(close, key=lambda e: _PREFERRED.index(e) if e in _PREFERRED else 99)
    ranked += [m.encoding for m in matches if m.encoding not in ranked]
    for encoding in ranked:
        if encoding.startswith(("utf_16", "utf_32")):
            continue
        if _decodes(path, encoding) is None:
            return encoding
    return None


def _by_language(path: Path, sample: bytes, matches: list[Any]) -> str | None:
    """The likely encoding whose reading shows a language best (charset_normalizer's
    coherence, then the least chaos, then the most common encoding). Encodings that read the
    text alike are one reading. When another reading shows a language almost as well, and
    reads differently: :class:`Ambiguous` (the person chooses)."""
    ranked = sorted(
        matches,
        key=lambda m: (-round(m.coherence, 3), round(m.chaos, 3), _LIKELY.index(m.encoding)),
    )
    readings: list[tuple[Any, str, int]] = []
    for match in ranked:
        if _decodes(path, match.encoding) is not None:
            continue
        text = sample.decode(match.encoding, errors="replace")
        if _C1.search(text):
            continue  # control characters no text holds: bytes of another encoding
        if any(text == seen for _, seen, _ in readings):
            continue  # the same reading as a better-placed encoding
        odd = sum(1 for c in _BETWEEN_LETTERS.findall(text) if not c.isalpha())
        odd += sum(text.count(c) for c in _RARE_LETTERS if c in text)
        odd += _mixed_words(text[: 64 * 1024])
        readings.append((match, text, odd))
    if not readings:
        return None
    # A symbol inside a word ("Ÿród³o") is a wrong reading's mark: fewest first.
    readings.sort(key=lambda r: r[2])
    best, text, odd = readings[0]
    rivals = [
        (m, t) for m, t, o in readings[1:]
        if o <= odd
        and m.coherence >= best.coherence - _LANGUAGE_MARGIN
        and m.chaos <= best.chaos + 0.01
    ]  # fmt: skip
    if rivals:
        shown = [(best, text), *rivals[:2]]
        raise Ambiguous([(m.encoding, m.language or None, _differing_line(t, text, shown))
                         for m, t in shown])  # fmt: skip
    return str(best.encoding)


_NOT_WORD = r"\s\d_,;:.!?()\[\]{}<>/\\|\"'“”‘’«»–—-"
_WORD = re.compile(f"[^{_NOT_WORD}]*[^\\x00-\\x7f][^{_NOT_WORD}]*")


def _mixed_words(text: str) -> int:
    """Words whose letters belong to more than one script ("Cafй", "Noлl"): a text is written
    in one script a word, so such words mark bytes of another code page, read wrong."""
    mixed = 0
    for word in _WORD.findall(text):
        scripts = {_script(c) for c in word if c.isalpha() or unicodedata.category(c)[0] == "M"}
        mixed += len(scripts) > 1
    return mixed


@functools.lru_cache(maxsize=4096)
def _script(letter: str) -> str:
    if letter.isascii():
        return "LATIN"
    return unicodedata.name(letter, "?").split(" ")[0]


def _differing_line(text: str, first: str, shown: list[Any]) -> str:
    """A line of ``text`` where the readings differ (the first such line of ``first``)."""
    others = [t.splitlines() for _, t in shown]
    for number, line in enumerate(first.splitlines()):
        if any(number >= len(o) or o[number] != line for o in others):
            mine = text.splitlines()
            return (mine[number] if number < len(mine) else "")[:80]
    return text.splitlines()[0][:80] if text else ""


def sniff_delimiter(path: Path, encoding: str) -> str:
    """The delimiter that splits the first records most consistently into more than one field;
    tab first for ``.tsv``, else comma first when nothing decides."""
    with path.open(encoding=encoding, newline="") as handle:
        sample = handle.read(64 * 1024)
    if len(sample) == 64 * 1024 and "\n" in sample:
        sample = sample[: sample.rfind("\n") + 1]
    order = ("\t", ",", ";", "|") if path.suffix.lower() == ".tsv" else DELIMITERS
    best, best_score = order[0], 0
    for delimiter in order:
        if delimiter not in sample:
            continue
        counts: Counter[int] = Counter()
        try:
            reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
            for number, cells in enumerate(reader):
                if number >= 50:
                    break
                if any(c.strip() for c in cells):
                    counts[len(cells)] += 1
        except csv.Error:
            continue
        if not counts:
            continue
        width, rows = counts.most_common(1)[0]
        score = rows if width > 1 else 0
        if score > best_score:
            best, best_score = delimiter, score
    return best


def text_batches(
    path: Path,
    encoding: str,
    delimiter: str,
    layout: Layout,
    size: int,
    notes: list[str] | None = None,
) -> Iterator[Batch]:
    """The data rows of a text table in batches, as :func:`~._table.batch_of` makes them, but read
    ``size`` records at a time by the CSV reader itself: a million-row file goes through here.

    Row numbers come from the reader's line count: a batch of one-line records numbers itself;
    only a batch holding a quoted line break counts the breaks in its cells.

    Text after a closing quote (``"abc" ,x``, ``"ab"c``) is kept as part of the cell, as
    Excel, pandas and Python's csv read it, and each such cell is told in ``notes`` (row and
    column); a quote never closed is refused, naming the record.
    """
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        line = 0
        try:
            _skip_header(reader, layout)
            line = reader.line_num
            while chunk := list(islice(reader, size)):
                end = reader.line_num
                if end - line == len(chunk):
                    numbers = list(range(line + 1, end + 1))
                else:
                    numbers = _record_starts(chunk, line)
                line = end
                batch = batch_of(numbers, chunk, layout, path=path, sheet=None)
                if batch.numbers:
                    yield batch
        except csv.Error:
            pass  # read again from there, the way spreadsheets read it
        else:
            return
    yield from _lenient_batches(path, encoding, delimiter, layout, size, line, notes)


#: The most cells with text after a closing quote that are each named in the notes.
_TOLD_CELLS = 5


def _lenient_batches(
    path: Path,
    encoding: str,
    delimiter: str,
    layout: Layout,
    size: int,
    after: int,
    notes: list[str] | None,
) -> Iterator[Batch]:
    """The batches of the records that start after line ``after`` (the strict reader stopped
    there), read by :func:`text_records`, with what it found told in ``notes``."""
    found: list[tuple[int, int, str]] = []
    numbers: list[int] = []
    chunk: list[list[str]] = []
    for start, cells in text_records(path, encoding, delimiter, found):
        if start <= max(after, layout.header_row):
            continue
        numbers.append(start)
        chunk.append(cells)
        if len(chunk) >= size:
            batch = batch_of(numbers, chunk, layout, path=path, sheet=None)
            numbers, chunk = [], []
            if batch.numbers:
                yield batch
    if chunk:
        batch = batch_of(numbers, chunk, layout, path=path, sheet=None)
        if batch.numbers:
            yield batch
    if notes is not None:
        for note in _after_quote_notes(found, layout):
            if note not in notes:
                notes.append(note)


def _after_quote_notes(found: list[tuple[int, int, str]], layout: Layout) -> list[str]:
    """What to tell of the cells with text after their closing quote."""
    if not found:
        return []
    names = dict(zip(layout.positions, layout.headers, strict=True))
    told = [
        f"row {row}, column {names.get(field, f'#{field + 1}')!r}: text after the closing quote "
        f"({sample!r}) is kept as part of the cell, as Excel reads it"
        for row, field, sample in found[:_TOLD_CELLS]
    ]
    if len(found) > _TOLD_CELLS:
        told.append(f"and {len(found) - _TOLD_CELLS} more cells with text after a closing quote")
    return told


def _skip_header(reader: Any, layout: Layout) -> None:
    """Read the records up to and including the header row."""
    start = 1
    for _ in reader:
        if start >= layout.header_row:
            return
        start = reader.line_num + 1


def text_after_quote(path: Path, delimiter: str, *, chunk: int = 8 << 20) -> bool:
    """Whether the file may hold text after a closing quote (``"abc" ,x``), which the fast
    readers keep as pyarrow and pandas do, without telling of it: a quote with text on both
    sides (neither a quote, the delimiter nor a line end). A stray quote inside a field that
    is not quoted (``5" pipe``) looks the same: either way the record reader reads the file,
    and tells of each cell. (A quoted field that ends with the delimiter, ``"a;"b``, is missed:
    its closing quote looks like an opening one.) Read in chunks: memory stays bounded."""
    if not delimiter.isascii() or len(delimiter) != 1:
        return True  # judged by the record reader
    stop = delimiter.encode("ascii")
    # A quote with text after it; then the byte before it says whether it opens a field.
    pattern = re.compile(rb'"[^"' + re.escape(stop) + rb"\r\n]")
    opening = frozenset(b'"\n\r' + stop)
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            # The last two bytes of the block before: a quote there is judged with the byte
            # after it, and the byte before it.
            text = tail + block
            for found in pattern.finditer(text, max(len(tail) - 1, 0)):
                at = found.start()
                if at > 0 and text[at - 1] not in opening:
                    return True
            tail = text[-2:]
    return False


class NotFast(Exception):
    """The fast reader cannot read this file exactly as the record reader would."""


#: Encodings in which a line break is always the single byte 0x0A or 0x0D.
_BYTE_LINES = ("utf_8", "utf_8_sig", "ascii", "cp125", "latin_1", "iso8859", "mac_")


def fast_batches(
    path: Path, encoding: str, delimiter: str, layout: Layout, size: int, *, verified: bool
) -> Iterator[Batch]:
    """The data rows as :func:`text_batches` gives them, parsed by pandas' C reader, each column
    made into Python values only when a stage asks for it.

    It numbers rows by counting lines, which is right only when no record spans lines. Unless
    ``verified`` (an earlier pass of this reader got through), it checks that at the end, against
    the file's own line count, and then stops with :class:`NotFast`, as it does at once when a
    record has more cells than the header or pandas cannot parse the text: the record reader then
    reads the file instead, and says exactly what is wrong if anything is. (It also reads a stray
    quote inside a field, ``"ab"c``, as Excel does; the record reader refuses that.)
    """
    count = _dense_columns(layout)
    if not codecs.lookup(encoding).name.replace("-", "_").startswith(_BYTE_LINES):
        raise NotFast(f"{encoding} is not a byte-per-line-break encoding")
    import pandas

    with path.open(encoding=encoding, newline="") as handle:
        first_line = line = _header_lines(handle, delimiter, layout)
        frames = pandas.read_csv(
            handle,
            sep=delimiter,
            header=None,
            names=range(count),
            index_col=False,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
            chunksize=size,
        )
        try:
            for frame in frames:
                numbers = list(range(line + 1, line + 1 + len(frame)))
                line += len(frame)
                columns = _Columns(functools.partial(_frame_column, frame), count)
                batch = _drop_blank(numbers, columns)
                if batch.numbers:
                    yield batch
        except (pandas.errors.ParserError, ValueError, UnicodeError) as exc:
            raise NotFast(str(exc)) from None
    if not verified:
        _check_lines(path, first_line, line)


def _dense_columns(layout: Layout) -> int:
    """How many columns the table has; NotFast unless each has a header, side by side (the
    fast readers number cells by position)."""
    count = len(layout.positions)
    if layout.positions != tuple(range(count)) or not count:
        raise NotFast("columns without a header between the others")
    return count


def _header_lines(handle: Any, delimiter: str, layout: Layout) -> int:
    """Read ``handle`` (text) up to and including the header row; the lines read."""
    reader = csv.reader(handle, delimiter=delimiter, strict=True)
    try:
        _skip_header(reader, layout)
    except csv.Error as exc:
        raise NotFast(str(exc)) from None
    return reader.line_num


def _check_lines(path: Path, first_line: int, line: int) -> None:
    """NotFast unless the records read after line ``first_line``, ending on ``line``, took one
    line each: then no record spans lines, and a record's number is its line."""
    lines = count_lines(path)
    if line != lines:
        raise NotFast(f"{line - first_line} records on {lines - first_line} lines")


#: Encodings pyarrow's CSV reader reads as they are (it transcodes others, more slowly).
_ARROW_ENCODINGS = ("utf_8", "utf_8_sig", "ascii")


def arrow_batches(
    path: Path, encoding: str, delimiter: str, layout: Layout, *, verified: bool
) -> Iterator[Batch]:
    """The data rows as :func:`fast_batches` gives them, parsed by pyarrow's multithreaded CSV
    reader, about twice as fast as pandas' for the pass that checks every row.

    It raises :class:`NotFast` when pyarrow is not installed, the encoding is not UTF-8, a record
    has a different number of cells than the header or spans lines, or the text does not parse:
    then pandas' reader (or the record reader) reads the file instead. Unless ``verified`` (an
    earlier pass of this reader got through), it checks for those as it goes, and at the end
    that it read as many records as the file has lines.
    """
    count = _dense_columns(layout)
    if codecs.lookup(encoding).name.replace("-", "_") not in _ARROW_ENCODINGS:
        raise NotFast(f"{encoding}: pyarrow reads UTF-8")
    try:
        import pyarrow
        import pyarrow.csv as arrow_csv
    except ImportError:
        raise NotFast("pyarrow is not installed") from None

    with path.open(encoding=encoding, newline="") as handle:
        first_line = line = _header_lines(handle, delimiter, layout)
    names = [str(i) for i in range(count)]
    with path.open("rb") as raw:
        head = b"".join(raw.readline() for _ in range(first_line))
        if b"\r" in head.replace(b"\r\n", b""):
            raise NotFast("lines that end with a lone carriage return")
        try:
            stream = arrow_csv.open_csv(
                raw,
                read_options=arrow_csv.ReadOptions(column_names=names, block_size=1 << 20),
                parse_options=arrow_csv.ParseOptions(
                    delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False
                ),
                convert_options=arrow_csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pyarrow.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for record_batch in stream:
                if not verified and _breaks_lines(record_batch):
                    raise NotFast("a record spans lines")  # at once, not at the end
                rows = record_batch.num_rows
                numbers = list(range(line + 1, line + 1 + rows))
                line += rows
                columns = _Columns(functools.partial(_arrow_column, record_batch), count)
                batch = _drop_blank(numbers, columns)
                if batch.numbers:
                    yield batch
        except (pyarrow.ArrowException, UnicodeError) as exc:
            raise NotFast(str(exc)) from None
    if not verified:
        _check_lines(path, first_line, line)


def _breaks_lines(record_batch: Any) -> bool:
    """Whether a cell holds a line break: then its record spans lines (each record is one line
    otherwise, since empty lines are records too, here). The cells' bytes are searched where
    they lie, all of a column at once."""
    for column in record_batch.columns:
        data = column.buffers()[2]  # a string column: validity, offsets, then the text
        if data is None:
            continue
        text = data.to_pybytes()
        if column.offset:  # a slice: only its own part counts
            offsets = column.buffers()[1].to_pybytes()
            first = int.from_bytes(offsets[4 * column.offset : 4 * column.offset + 4], "little")
            last_at = 4 * (column.offset + len(column))
            last = int.from_bytes(offsets[last_at : last_at + 4], "little")
            text = text[first:last]
        if b"\n" in text or b"\r" in text:
            return True
    return False


class _Columns(Sequence[list[Any]]):
    """A parsed chunk's columns as lists, each made when first asked for (``make(index)``)."""

    def __init__(self, make: Callable[[int], list[Any]], count: int) -> None:
        self._make = make
        self._lists: list[list[Any] | None] = [None] * count

    def __len__(self) -> int:
        return len(self._lists)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self._lists))[index]]
        made = self._lists[index]
        if made is None:
            made = self._lists[index] = self._make(index)
        return made


def _frame_column(frame: Any, index: int) -> list[Any]:
    return list(frame[index].tolist())


def _arrow_column(batch: Any, index: int) -> list[Any]:
    return list(batch.column(index).to_pylist())


def count_lines(path: Path) -> int:
    """Lines in the file as a reader with universal newlines sees them (\\n, \\r\\n or \\r)."""
    lines = 0
    last = b""
    pending_cr = False
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            if b"\r" in chunk:
                lines += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            else:  # the common case: one count, not three
                lines += chunk.count(b"\n")
            if pending_cr and chunk.startswith(b"\n"):
                lines -= 1  # a \r\n split across two reads
            pending_cr = chunk.endswith(b"\r")
            last = chunk[-1:]
    if last and last not in (b"\n", b"\r"):
        lines += 1  # a last line without a line break
    return lines


def _drop_blank(numbers: list[int], columns: Sequence[list[Any]]) -> Batch:
    """The batch without its blank rows (every cell empty or spaces), tested in C where a row's
    first cell holds something, as nearly all do."""
    firsts = columns[0]
    if "" not in firsts and not any(map(str.isspace, firsts)):
        return Batch(numbers, columns=columns)
    whole = [columns[c] for c in range(len(columns))]
    keep = [i for i, row in enumerate(zip(*whole, strict=True)) if "".join(row).strip()]
    return Batch(
        [numbers[i] for i in keep], columns=[[column[i] for i in keep] for column in whole]
    )


_BREAK = re.compile(r"\r\n|\r|\n")


def _record_starts(chunk: list[list[str]], line: int) -> list[int]:
    """The line where each record starts, counting the line breaks inside quoted cells."""
    starts = []
    for cells in chunk:
        starts.append(line + 1)
        line += 1 + len(_BREAK.findall("\0".join(cells)))
    return starts


def text_records(
    path: Path, encoding: str, delimiter: str, found: list[tuple[int, int, str]] | None = None
) -> Iterator[Record]:
    """``(line where the record starts, cells)`` for every record, blank ones included.

    Text after a closing quote is kept in the cell, as Excel, pandas and Python's csv read it
    (each such cell goes into ``found``: its row, field and a sample); a quote that is never
    closed (which would swallow the rest of the file into one cell) is refused."""
    with path.open(encoding=encoding, newline="") as handle:
        lines: list[str] = []

        def read() -> Iterator[str]:
            for text in handle:
                lines.append(text)
                yield text

        reader = csv.reader(read(), delimiter=delimiter, strict=False)
        start = 1
        try:
            for cells in reader:
                raw = "".join(lines)
                lines.clear()
                if '"' in raw:
                    after, unclosed = _quotes_of(raw, delimiter)
                    if unclosed is not None:
                        raise SourceError(
                            "malformed CSV (a quote opened in this record is never closed): "
                            "check the quotes on this record",
                            path=path,
                            row=start,
                        )
                    if found is not None:
                        found.extend((start, field, sample) for field, sample in after)
                yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise SourceError(
                f"malformed CSV ({exc}): check the quotes on this record", path=path, row=start
            ) from None


def _quotes_of(raw: str, delimiter: str) -> tuple[list[tuple[int, str]], int | None]:
    """In one record's text: the fields with text after their closing quote (each with a
    sample of it), and the field whose quote is never closed, if one is."""
    after: list[tuple[int, str]] = []
    field, i, n = 0, 0, len(raw)
    while i < n:
        if raw[i] == '"':  # a quoted field
            opened = i
            i += 1
            while True:
                i = raw.find('"', i)
                if i < 0:
                    return after, field
                if raw.startswith('""', i):
                    i += 2
                    continue
                i += 1
                break
            end = i
            while end < n and raw[end] not in (delimiter, "\r", "\n"):
                end += 1
            if end > i:
                after.append((field, raw[opened:end][-40:]))
            i = end
        else:  # an unquoted field: up to the delimiter
            while i < n and raw[i] not in (delimiter, "\r", "\n"):
                i += 1
        if i < n and raw[i] == delimiter:
            field += 1
        i += 1
    return after, None
