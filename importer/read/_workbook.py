"""XLSX/XLSM/XLSB, XLS and ODS through python-calamine, read in a child process of bounded
memory (:mod:`._child`), after the zip checks of :mod:`._limits`: the rows come back through a
spool file on disk and are streamed from there, pass after pass."""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ._limits import LIMITS, ReadLimits, check_zip

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CHILD = Path(__file__).with_name("_child.py")
#: Sheets read lately, by file and sheet asked for: the page opens one upload many times.
_KEPT = 4


@dataclass(eq=False)
class Spooled:
    """A sheet read by the child: its name, where it begins, its date system, and its rows
    on disk (removed when this goes)."""

    sheet: str
    rows: int
    column_offset: int
    date1904: bool
    spool: Path
    _folder: Path = field(repr=False)
    #: What to tell of how the workbook was read (a macro sheet left out).
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        weakref.finalize(self, shutil.rmtree, str(self._folder), True)

    def chunks(self) -> Iterator[tuple[int, list[list[Any]]]]:
        """Every row from row 1, as the child wrote them: in batches, each its number of rows
        and its columns (of equal length; none for rows of no cell)."""
        with self.spool.open("rb") as handle:
            while True:
                try:
                    chunk = _Cells(handle).load()
                except EOFError:
                    return
                yield chunk

    def iter_rows(self) -> Iterator[list[Any]]:
        """Every row from row 1, as the child wrote them."""
        for count, columns in self.chunks():
            if columns:
                yield from map(list, zip(*columns, strict=True))
            else:
                yield from ([] for _ in range(count))


class _Cells(pickle.Unpickler):
    """Our child's spool: lists of plain cells; no class but datetime's may be named."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "datetime" and name in ("datetime", "date", "time", "timedelta"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a cell")


_lock = threading.Lock()
_recent: OrderedDict[tuple[Any, ...], Spooled] = OrderedDict()


def read_workbook(path: Path, requested: str | None, limits: ReadLimits = LIMITS) -> Spooled:
    """The sheet of the workbook at ``path`` (by name or position, else the first visible one
    with data), read within ``limits``. SourceError for a file the reader refuses or that
    breaks a limit, naming the limit."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, requested, limits)
    with _lock:
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key]
    _check(path, limits)
    folder = Path(tempfile.mkdtemp(prefix="task-import-read-"))
    spool = folder / "rows.pickle"
    try:
        answer = _child(path, limits, mode="read", sheet=requested, spool=str(spool),
                        folder=str(folder))  # fmt: skip
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    read = Spooled(answer["sheet"], answer["rows"], answer["column_offset"],
                   answer["date1904"], spool, folder, list(answer.get("notes", [])))  # fmt: skip
    with _lock:
        _recent[key] = read
        while len(_recent) > _KEPT:
            _recent.popitem(last=False)
    return read


def sheets_with_data(path: Path, limits: ReadLimits = LIMITS) -> list[str]:
    """The visible sheets of the workbook at ``path`` that hold data, in order."""
    _check(path, limits)
    folder = tempfile.mkdtemp(prefix="task-import-read-")
    try:
        return list(_child(path, limits, mode="sheets", folder=folder)["sheets"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check(path: Path, limits: ReadLimits) -> None:
    with path.open("rb") as handle:
        if handle.read(4) == ZIP_MAGIC:
            check_zip(path, limits)


def _child(path: Path, limits: ReadLimits, **job: Any) -> dict[str, Any]:
    """The child's answer to ``job`` on ``path``; SourceError for its refusal, or for a child
    that went over its memory or time."""
    job = {"path": str(path), "limits": asdict(limits), "sheet": None, **job}
    command = [sys.executable, str(_CHILD), json.dumps(job)]
    try:
        done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=limits.seconds + 30, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise _too_slow(path, limits) from None
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    answer: dict[str, Any] | None = None
    if done.returncode == 0 and lines:
        try:
            answer = json.loads(lines[-1])
        except ValueError:
            answer = None
    if answer is None:
        failed = done.stderr.decode("utf-8", "replace")
        if done.returncode == -signal.SIGXCPU:
            raise _too_slow(path, limits)
        if done.returncode in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGSEGV) or (
            "memory" in failed.lower()
        ):
            raise _too_big(path, limits)
        raise SourceError(
            "cannot read the workbook: the reader stopped "
            f"(exit {done.returncode}); it is damaged or not a spreadsheet",
            path=path,
        )
    if "error" in answer:
        if answer["error"] == "memory":
            raise _too_big(path, limits)
        where = {k: answer.get(k) for k in ("sheet", "row", "column")}
        raise SourceError(answer["error"], path=path, **where)
    return answer


def _too_big(path: Path, limits: ReadLimits) -> SourceError:
    return SourceError(
        f"refused: reading the workbook needed more than {limits.memory_mb:,} MB of memory, "
        "the limit: a sheet with cells far from its table, or a file built to exhaust "
        "memory, does this. Save the table alone in a new workbook, or as CSV",
        path=path,
    )


def _too_slow(path: Path, limits: ReadLimits) -> SourceError:
    return SourceError(
        f"refused: reading the workbook took more than {limits.seconds} s, the limit: save "
        "the table as CSV (the command line streams a CSV of any size)",
        path=path,
    )
