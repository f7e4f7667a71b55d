"""XLSX/XLSM/XLSB, XLS and ODS through python-calamine, read in a child process of bounded
memory (:mod:`._child`), after the zip checks of :mod:`._limits`: the rows come back through a
spool file on disk and are streamed from there, pass after pass (the first while the child
writes them: a batch is read once the child says it is whole)."""

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
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ._limits import LIMITS, ReadLimits, check_zip

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CHILD = Path(__file__).with_name("_child.py")
#: The seconds a child may take past its CPU limit (it may wait on the disk) before it is
#: stopped.
_GRACE = 30
#: Sheets read lately, by file and sheet asked for: the page opens one upload many times.
_KEPT = 4


@dataclass(eq=False)
class Spooled:
    """A sheet read by the child: its name, where it begins, its date system, and its rows
    on disk (removed when this goes), which the child may still be writing."""

    sheet: str
    #: The rows from row 1 to the end of the sheet's used range.
    rows: int
    column_offset: int
    date1904: bool
    spool: Path
    _folder: Path = field(repr=False)
    #: What to tell of how the workbook was read (a macro sheet left out).
    notes: list[str] = field(default_factory=list)
    #: The child writing the spool.
    _writing: _Writing | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        weakref.finalize(self, _discard, self._writing, str(self._folder))

    def chunks(self) -> Iterator[tuple[int, list[list[Any]]]]:
        """Every row from row 1, as the child wrote them: in batches, each its number of rows
        and its columns (of equal length; none for rows of no cell). Each batch is given once
        the child has written it whole; SourceError, after the batches before it, for what
        stopped the child."""
        with self.spool.open("rb") as handle:
            for index in count():
                if self._writing is not None and not self._writing.whole(index):
                    return
                try:
                    chunk = _Cells(handle).load()
                except EOFError:
                    return
                yield chunk

    def iter_rows(self) -> Iterator[list[Any]]:
        """Every row from row 1, as the child wrote them."""
        for rows, columns in self.chunks():
            if columns:
                yield from map(list, zip(*columns, strict=True))
            else:
                yield from ([] for _ in range(rows))


class _Writing:
    """The child writing a sheet's spool: how many of its batches are whole in the file, and
    what stopped it, if anything did (its refusal, its limits, or a time limit of the
    parent's own: ``seconds`` of the limits and :data:`_GRACE` more)."""

    def __init__(self, process: subprocess.Popen[bytes], path: Path, limits: ReadLimits,
                 errors: Path) -> None:  # fmt: skip
        self._process = process
        self._path = path
        self._limits = limits
        self._errors = errors
        self._slow = False
        self._changed = threading.Condition()
        self._ready = 0
        self._done = False
        self._error: SourceError | None = None
        self._timer = threading.Timer(limits.seconds + _GRACE, self._stop)
        self._timer.daemon = True
        self._timer.start()

    def first(self) -> dict[str, Any]:
        """The child's first answer (the sheet it read); SourceError for its refusal, or for
        what stopped it. Then the rest of its answers are followed by a thread."""
        answer = self._answer()
        if answer is None or "error" in answer:
            raise self._ended(answer)
        threading.Thread(target=self._follow, name="workbook-reader", daemon=True).start()
        return answer

    def whole(self, index: int) -> bool:
        """Whether batch ``index`` (from 0) is in the spool, whole, once the child has written
        it or ended; SourceError for what stopped the child before it."""
        with self._changed:
            while self._ready <= index and not self._done:
                self._changed.wait()
            if self._ready > index:
                return True
            if self._error is not None:
                raise self._error
            return False

    def stop(self) -> None:
        """End the child, if it still runs."""
        self._timer.cancel()
        if self._process.poll() is None:
            with suppress(OSError):
                self._process.kill()
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(5)

    def _stop(self) -> None:
        self._slow = True
        with suppress(OSError):
            self._process.kill()

    def _answer(self) -> dict[str, Any] | None:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        try:
            answer = json.loads(line) if line else None
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def _follow(self) -> None:
        error: SourceError | None = None
        try:
            assert self._process.stdout is not None
            while (line := self._process.stdout.readline()) == b"+\n":
                with self._changed:
                    self._ready += 1
                    self._changed.notify_all()
            try:
                answer = json.loads(line) if line else None
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or "rows" not in answer:
                error = self._ended(answer if isinstance(answer, dict) else None)
            else:  # (the child ends as it says so: reaped, not left a zombie)
                with suppress(subprocess.TimeoutExpired):
                    self._process.wait(10)
        except Exception:  # (a broken pipe, say: the child stopped)
            error = self._ended(None)
        finally:
            self._timer.cancel()
            with self._changed:
                self._done = True
                self._error = error
                self._changed.notify_all()

    def _ended(self, answer: dict[str, Any] | None) -> SourceError:
        """What stopped the child: its refusal, or how it ended."""
        with suppress(subprocess.TimeoutExpired):
            self._process.wait(10)
        self._timer.cancel()
        if self._slow:
            return _too_slow(self._path, self._limits)
        if answer is not None and "error" in answer:
            return _refusal(self._path, self._limits, answer)
        try:
            failed = self._errors.read_bytes()[-4096:].decode("utf-8", "replace")
        except OSError:
            failed = ""
        return _stopped(self._path, self._limits, self._process.poll(), failed)


def _discard(writing: _Writing | None, folder: str) -> None:
    if writing is not None:
        writing.stop()
    shutil.rmtree(folder, ignore_errors=True)


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
    job = {"path": str(path), "limits": asdict(limits), "mode": "read", "sheet": requested,
           "spool": str(spool), "folder": str(folder)}  # fmt: skip
    writing: _Writing | None = None
    try:
        spool.touch()  # (there to be opened as soon as the child tells of the sheet)
        with (folder / "errors").open("wb") as errors:
            process = subprocess.Popen([sys.executable, str(_CHILD), json.dumps(job)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=errors)  # fmt: skip
        writing = _Writing(process, path, limits, folder / "errors")
        answer = writing.first()
    except BaseException:
        _discard(writing, str(folder))
        raise
    read = Spooled(answer["sheet"], answer["rows"], answer["column_offset"],
                   answer["date1904"], spool, folder, list(answer.get("notes", [])),
                   writing)  # fmt: skip
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
                              timeout=limits.seconds + _GRACE, check=False)  # fmt: skip
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
        raise _stopped(path, limits, done.returncode, done.stderr.decode("utf-8", "replace"))
    if "error" in answer:
        raise _refusal(path, limits, answer)
    return answer


def _stopped(path: Path, limits: ReadLimits, returncode: int | None, failed: str) -> SourceError:
    """The error of a child that stopped without an answer: ``returncode`` and its ``failed``
    output say why."""
    if returncode == -signal.SIGXCPU:
        return _too_slow(path, limits)
    if returncode in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGSEGV) or (
        "memory" in failed.lower()
    ):
        return _too_big(path, limits)
    return SourceError(
        "cannot read the workbook: the reader stopped "
        f"(exit {returncode}); it is damaged or not a spreadsheet",
        path=path,
    )


def _refusal(path: Path, limits: ReadLimits, answer: dict[str, Any]) -> SourceError:
    """The child's refusal, naming where it is."""
    if answer["error"] == "memory":
        return _too_big(path, limits)
    where = {k: answer.get(k) for k in ("sheet", "row", "column")}
    return SourceError(answer["error"], path=path, **where)


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
