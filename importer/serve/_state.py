"""What the page remembers of each upload: in memory, and in its private folder (``upload.json``)
so that a server restarted after a crash still knows an upload whose run must be resumed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import ProgressEvent
from ..read import RowCache
from ..summary import RunSummary
from ._rows import CheckedRows

#: File names the uploaded file may not take in its folder.
_OURS = {"upload.json", "mapping.toml"}


@dataclass
class Progress:
    """A run going on (or done): what the page polls."""

    total: int = 0
    done: int = 0
    failures: int = 0
    began: float = field(default_factory=time.monotonic)
    finished: bool = False
    #: Waiting for another import to end (one import at a time: they share the journal).
    queued: bool = False
    error: str | None = None
    summary: RunSummary | None = None
    task: asyncio.Task[Any] | None = None
    #: A stop asked for; the run's own event, on the loop of the thread it runs in.
    stopped: bool = False
    _stop: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def heard(self, event: ProgressEvent) -> None:
        """The run's progress (from the run's thread): what the page polls."""
        self.total, self.done, self.failures = event.total, event.done, event.failures

    def stopper(self) -> asyncio.Event:
        """The event the run watches, made on the running loop (the run's thread's own)."""
        event = asyncio.Event()
        with self._lock:
            self._stop = (asyncio.get_running_loop(), event)
            if self.stopped:
                event.set()
        return event

    def stop_run(self) -> None:
        """Ask the run to stop (from any thread): no new row is sent."""
        with self._lock:
            self.stopped = True
            if self._stop is not None:
                loop, event = self._stop
                with contextlib.suppress(RuntimeError):  # its loop has ended: so has the run
                    loop.call_soon_threadsafe(event.set)

    def as_dict(self) -> dict[str, Any]:
        seconds = max(1e-6, time.monotonic() - self.began)
        rate = self.done / seconds
        left = (self.total - self.done) / rate if rate > 0 and self.total else None
        return {
            "total": self.total,
            "done": self.done,
            "failures": self.failures,
            "rows_per_second": round(rate, 1),
            "eta_seconds": round(left) if left is not None else None,
            "finished": self.finished,
            "queued": self.queued,
            "error": self.error,
        }


@dataclass(frozen=True)
class Verdict:
    """What a check said of one row: its result, its code, what a run would do with it."""

    result: str
    code: str | None
    verb: str


@dataclass(frozen=True)
class Checked:
    """A check of an upload: for which decisions (:meth:`Upload.decided`), and its summary or
    the message that stopped it; each row's verdict, the rows checked again since the check
    of every row, and every row as the check page shows it."""

    decided: tuple[Any, ...]
    summary: RunSummary | None
    error: str | None
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    #: The rows checked again since the check of every row.
    rechecked: frozenset[int] = frozenset()
    #: The column the tasks' names come from, if one does.
    name_column: str | None = None
    #: The rows as the check page shows them (after a check of every row).
    rows: CheckedRows | None = None


@dataclass
class Upload:
    """One uploaded sheet and what the person decided about it."""

    id: str
    folder: Path
    name: str
    sheet: str | None = None
    #: The text file's encoding, chosen on the page (None: detected).
    encoding: str | None = None
    profile: str | None = None
    #: Column → field chosen on the page (None: not imported).
    choices: dict[str, str | None] = field(default_factory=dict)
    #: The settings given on the page (see :data:`SETTINGS`), as text; absent: the default.
    settings: dict[str, str] = field(default_factory=dict)
    #: Words of the priority and status columns read as the person said ("urgent" → "high";
    #: "Closed-won" → "4"), by field.
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Whether the mapping was taken from an earlier upload of a sheet of the same columns.
    reused: bool = False
    #: Per sheet ("" for a text file's one table): (row number, column) → corrected value. A
    #: correction belongs to the sheet it was made on, and only to it.
    corrections: dict[str, dict[tuple[int, str], str]] = field(default_factory=dict)
    #: The rows a check of every row read, for the re-checks after a correction (in memory
    #: only: a restart reads the file again).
    row_cache: RowCache = field(default_factory=RowCache, repr=False, compare=False)
    #: The rows the results say were not imported, as the done page lists them, and for
    #: which results sheet (its size and time).
    not_imported: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)
    #: An import was started; it finished (not stopped) — both kept across restarts.
    imported: bool = False
    finished: bool = False
    progress: Progress | None = None
    #: The results of the import, to download.
    downloads: dict[str, bytes] = field(default_factory=dict)
    #: What the last check found, and for which decisions; one check at a time (a check
    #: merges into the one before it, and writes the upload's validation sheet).
    checked: Checked | None = None
    checking: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def decided(self) -> tuple[Any, ...]:
        """What a check depends on: the sheet, the encoding, the profile, the choices, the
        corrections."""
        return (
            self.sheet,
            self.encoding,
            tuple(sorted(self.settings.items())),
            tuple(sorted((f, tuple(sorted(w.items()))) for f, w in self.values.items())),
            self.profile,
            tuple(sorted((k, v or "") for k, v in self.choices.items())),
            tuple(sorted(self.fixes.items())),
        )

    @property
    def fixes(self) -> dict[tuple[int, str], str]:
        """The corrections of the sheet chosen now (made on it, for it alone)."""
        return self.corrections.setdefault(self.sheet or "", {})

    @property
    def path(self) -> Path:
        return self.folder / self.name

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def results_path(self) -> Path:
        return self.folder / f"{self.stem}.results.xlsx"

    @property
    def validation_path(self) -> Path:
        suffix = ".csv" if self.path.suffix.lower() in (".csv", ".tsv", ".txt") else ".xlsx"
        return self.folder / f"{self.stem}.validation{suffix}"

    def save(self) -> None:
        if not self.folder.exists():
            return
        data = {
            "name": self.name,
            "sheet": self.sheet,
            "encoding": self.encoding,
            "profile": self.profile,
            "choices": self.choices,
            "settings": self.settings,
            "reused": self.reused,
            "values": self.values,
            "corrections": {
                sheet: [[n, c, v] for (n, c), v in fixes.items()]
                for sheet, fixes in self.corrections.items()
                if fixes
            },
            "imported": self.imported,
            "finished": self.finished,
        }
        (self.folder / "upload.json").write_text(json.dumps(data), encoding="utf-8")

    @property
    def needs_resume(self) -> bool:
        """Whether an import of it was started and stopped before its end."""
        running = self.progress is not None and not self.progress.finished
        return self.imported and not self.finished and not running

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Uploads:
    """Every upload, each in a private folder under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.by_id: dict[str, Upload] = {}
        for folder in sorted(root.iterdir()):
            if not folder.is_dir():
                continue  # the mappings remembered (see remember)
            upload = _load(folder)
            if upload is None:
                continue
            if upload.needs_resume:
                self.by_id[upload.id] = upload
            else:  # left by a server that did not stop cleanly: nothing to go on with
                upload.remove()

    def new(self, filename: str) -> Upload:
        ident = secrets.token_urlsafe(12)
        folder = self.root / ident
        folder.mkdir(mode=0o700)
        name = safe_name(filename)
        upload = Upload(id=ident, folder=folder, name=name)
        self.by_id[ident] = upload
        return upload

    def get(self, ident: str) -> Upload | None:
        return self.by_id.get(ident)

    def forget(self, upload: Upload) -> None:
        upload.remove()
        self.by_id.pop(upload.id, None)

    def remember(
        self, columns: Iterable[str], choices: Mapping[str, str | None], settings: Mapping[str, str]
    ) -> None:
        """The mapping and settings chosen for a sheet of these columns, for the next upload of
        a sheet of the same columns (the rows to fix, sent back; next month's export)."""
        known = self._mappings()
        key = _columns_key(columns)
        known.pop(key, None)
        known[key] = {"choices": dict(choices), "settings": dict(settings)}
        while len(known) > _REMEMBERED:
            known.pop(next(iter(known)))
        path = self.root / _MAPPINGS
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(known), encoding="utf-8")
        os.replace(temporary, path)

    def recall(self, columns: Iterable[str]) -> tuple[dict[str, str | None], dict[str, str]] | None:
        """What :meth:`remember` kept for a sheet of these columns, if anything."""
        found = self._mappings().get(_columns_key(columns))
        if not isinstance(found, dict):
            return None
        choices = {str(k): (str(v) if v else None) for k, v in found.get("choices", {}).items()}
        settings = {str(k): str(v) for k, v in found.get("settings", {}).items()}
        return choices, settings

    def _mappings(self) -> dict[str, Any]:
        try:
            known = json.loads((self.root / _MAPPINGS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}

    def close(self) -> None:
        """At a clean stop: every folder goes, but those of a run that must be resumed."""
        for upload in list(self.by_id.values()):
            if not (upload.imported and not upload.finished):
                upload.remove()


#: Where the mappings chosen on the page are remembered, and how many.
_MAPPINGS = "mappings.json"
_REMEMBERED = 50


def _columns_key(columns: Iterable[str]) -> str:
    return "\x1f".join(sorted(columns))


def safe_name(filename: str) -> str:
    """The uploaded file's name, as a plain file name of ours."""
    name = Path(filename.replace("\\", "/")).name.strip() or "upload.csv"
    name = "".join(c if c.isalnum() or c in "._- " else "_" for c in name).lstrip(".")
    if name in _OURS or not name:
        name = f"sheet_{name or 'upload.csv'}"
    return name[:120]


def _load(folder: Path) -> Upload | None:
    try:
        data = json.loads((folder / "upload.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        shutil.rmtree(folder, ignore_errors=True)  # half made: nothing to keep
        return None
    return Upload(
        id=folder.name,
        folder=folder,
        name=data["name"],
        sheet=data.get("sheet"),
        encoding=data.get("encoding"),
        profile=data.get("profile"),
        choices=data.get("choices") or {},
        settings={str(k): str(v) for k, v in (data.get("settings") or {}).items()},
        reused=bool(data.get("reused")),
        values={
            str(f): {str(k): str(v) for k, v in words.items()}
            for f, words in (data.get("values") or {}).items()
        },
        corrections={
            str(sheet): {(int(n), c): v for n, c, v in fixes}
            for sheet, fixes in (data.get("corrections") or {}).items()
        },
        imported=bool(data.get("imported")),
        finished=bool(data.get("finished")),
    )
