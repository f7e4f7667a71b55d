"""The page: upload, map, check and fix, import with live progress, download the results.

Every stage is the library's own (``prepare``, ``validate_source``, ``run_import``); the page
only keeps what a person decided (the sheet, the column choices, the corrected cells) and hands
it to them as a run's options: a mapping file written in the upload's folder, and corrections
that the reader applies as it reads (the uploaded file is never changed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..client import Credentials, IvvyClient, IvvyError
from ..errors import AmbiguousEncoding, ImporterError
from ..fields import REQUIRED_ON_CREATE, describe_code
from ..map import TARGETS
from ..options import RunOptions
from ..pipeline import run_import, validate_source
from ..prepare import open_mapped, prepare
from ..profiles import PROFILES
from ..read import WORKBOOK_SUFFIXES, detect_encoding, encoding_choices, list_sheets
from ..reconcile import SETTLE
from ..summary import RunSummary
from ._guard import Guard, NotFound, Secured, check_csrf
from ._jobs import collect_verdicts, off_loop
from ._rows import CheckedRows, verdict_rows
from ._state import Checked, Progress, Upload, Uploads, Verdict
from ._views import (
    BAR_COLOURS,
    LABELS,
    PLAN_ORDER,
    SETTINGS,
    VALUE_CHOICES,
    attachment,
    bars,
    choosing,
    content_type,
    describe_mapping,
    for_the_page,
    mapped_so_far,
    mapping_toml,
    page_words,
    rows_to_fix,
    scrubbed,
    settings_options,
    value_words,
)

log = logging.getLogger("importer.serve")


SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")


#: Rows a check page shows at most (the downloads hold them all).
SHOWN_ROWS = 500


def _not_imported(upload: Upload) -> tuple[list[str], list[dict[str, Any]], int]:
    """The rows of the upload's results that were not imported (invalid, failed): the
    results' source headers, the first of them (as many as a page shows), and how many more.
    Read once for each results sheet (the done page is shown again and again)."""
    path = upload.results_path
    stat = path.stat()
    key = (stat.st_size, stat.st_mtime_ns)
    kept = upload.not_imported
    if kept is not None and kept[0] == key:
        return kept[1]
    headers, rows = verdict_rows(path)
    first: list[dict[str, Any]] = []
    more = 0
    for row in rows:
        if row["result"] in ("invalid", "failed"):
            if len(first) < SHOWN_ROWS:
                first.append(row)
            else:
                more += 1
    upload.not_imported = (key, (headers, first, more))
    return headers, first, more


@dataclass(frozen=True)
class _View:
    """Which rows the check page shows: only those with errors, of one code, of one column
    (the column an error names), and which page of them."""

    errors: bool = False
    code: str = ""
    column: str = ""
    page: int = 1

    @classmethod
    def of(cls, given: Any) -> _View:
        page = str(given.get("page") or "1")
        return cls(
            errors=given.get("errors") == "1",
            code=str(given.get("code") or ""),
            column=str(given.get("column_filter") or ""),
            page=int(page) if page.isdigit() and int(page) >= 1 else 1,
        )

    def keeps(self, row: Mapping[str, Any]) -> bool:
        if self.errors and row["result"] == "valid":
            return False
        if self.code and str(row.get("error_code") or "") != self.code:
            return False
        return not self.column or str(row.get("field") or "") == self.column

    def query(self, page: int | None = None) -> str:
        """This view as a query string (``page``: another page of it)."""
        pairs = [("errors", "1" if self.errors else ""), ("code", self.code),
                 ("column_filter", self.column), ("page", str(page or self.page))]  # fmt: skip
        return urlencode([(k, v) for k, v in pairs if v and (k != "page" or v != "1")])


@dataclass
class ServeConfig:
    """How the page runs: where it sends, where uploads and journals go, its limits."""

    credentials: Credentials
    uploads: Path
    state: Path | str | None = None
    #: Required on every request when the page is served beyond loopback.
    token: str | None = None
    max_upload: int = 50 << 20
    #: Shown on the page: "a local sandbox" or the target.
    target_label: str = ""
    #: The Host values a request may carry (on loopback: this page's own names and port, so a
    #: site that points its name at 127.0.0.1 gets nothing); None beyond loopback, where the
    #: token guards every request.
    hosts: frozenset[str] | None = None
    #: How long a stop waits for a run to record where it stopped.
    stop_wait: float = 3.0
    #: How long a create whose answer was lost waits before it is looked up (as run's).
    settle: float = SETTLE


#: Encodings that need no choosing (a legacy one is shown, with a way to change it).
_UNICODE = frozenset({"utf_8", "utf_8_sig", "ascii", "utf_16", "utf_16_le", "utf_16_be"})


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host values of a page served on loopback at ``port``."""
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


class Page:
    """The application and its state."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.uploads = Uploads(config.uploads)
        #: One import at a time (they share the target's journal): the others wait their turn.
        self._importing = asyncio.Lock()
        #: The upload whose import holds the turn.
        self._importer: Upload | None = None
        folder = Path(__file__).with_name("templates")
        self.templates = Jinja2Templates(directory=str(folder))
        self.templates.env.globals["targets"] = TARGETS
        self.templates.env.filters["page_words"] = page_words
        self.templates.env.globals["labels"] = LABELS
        self.templates.env.globals["required"] = REQUIRED_ON_CREATE
        self.starlette = Starlette(
            routes=[
                Route("/", self.home),
                Route("/upload", self.upload, methods=["POST"]),
                Route("/u/{id}/sheet", self.sheet, methods=["GET", "POST"]),
                Route("/u/{id}/encoding", self.encoding, methods=["GET", "POST"]),
                Route("/u/{id}/map", self.mapping, methods=["GET", "POST"]),
                Route("/u/{id}/header", self.header, methods=["POST"]),
                Route("/u/{id}/mapping.toml", self.mapping_file),
                Route("/u/{id}/check", self.check, methods=["GET", "POST"]),
                Route("/u/{id}/fix", self.fix, methods=["POST"]),
                Route("/u/{id}/replace", self.replace, methods=["POST"]),
                Route("/u/{id}/unfix", self.unfix, methods=["POST"]),
                Route("/u/{id}/corrected", self.corrected, methods=["GET", "POST"]),
                Route("/u/{id}/import", self.import_page, methods=["GET", "POST"]),
                Route("/u/{id}/progress", self.progress),
                Route("/u/{id}/stop", self.stop, methods=["POST"]),
                Route("/u/{id}/results.xlsx", self.results),
                Route("/u/{id}/to-fix.xlsx", self.to_fix),
                Route("/u/{id}/remove", self.remove, methods=["POST"]),
                Mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static")))),
            ],
            lifespan=self._lifespan,
        )
        self.starlette.add_middleware(Guard, page=self)
        #: The application: the security headers go on every answer, a 500 included (they are
        #: added outside Starlette's own error handling).
        self.app = Secured(self.starlette)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.shutdown()

    # -- helpers ------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("target", self.config.target_label)
        context["csrf"] = request.state.csrf
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def _upload(self, request: Request) -> Upload:
        upload = self.uploads.get(request.path_params["id"])
        if upload is None:
            raise NotFound
        return upload

    def options(self, upload: Upload, **more: Any) -> RunOptions:
        """The run's options for what the person decided; reading them changes nothing (the
        mapping file is written when the choices are saved, by a POST)."""
        mapping = upload.folder / "mapping.toml"
        # The page writes its own mapping file: naming the id column there is not the
        # person's say-so to update tasks this tool did not make (the check page asks).
        more.setdefault("update_existing", False)
        return RunOptions(
            **settings_options(upload.settings),
            sheet=upload.sheet,
            encoding=upload.encoding,
            profile=upload.profile if not upload.choices else None,
            mapping=mapping if upload.choices else None,
            fixes=dict(upload.fixes) or None,
            state=self.config.state,
            settle=self.config.settle,
            **more,
        )

    def _save(self, upload: Upload) -> None:
        """What the person decided, kept (and the mapping file the runs read)."""
        if upload.choices:
            text = mapping_toml(upload.choices, upload.profile, upload.values)
            (upload.folder / "mapping.toml").write_text(text, encoding="utf-8")
        upload.save()

    def plain(self, exc: BaseException, upload: Upload | None = None) -> str:
        """A message for the page: no server path (a file is named by its name), no other
        upload's folder, nothing of the credentials, and the page's own controls where the
        message names a command-line option."""
        return page_words(scrubbed(str(exc), upload, self.config.credentials))

    # -- routes -------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        uploads = list(self.uploads.by_id.values())
        waiting = [u for u in uploads if u.needs_resume]
        running = [u for u in uploads if u.progress is not None and not u.progress.finished]
        return self.render(request, "upload.html", waiting=waiting, running=running,
                           limit_mb=self.config.max_upload >> 20, suffixes=SUFFIXES)  # fmt: skip

    async def upload(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None:
            return self._refuse(request, 411, "The upload did not say its size: try again.")
        if int(length) > self.config.max_upload + 64 * 1024:
            return self._too_big(request)
        form = await request.form(max_files=1, max_fields=10)
        check_csrf(request, form.get("csrf"))
        sent = form.get("file")
        if not isinstance(sent, UploadFile) or not sent.filename:
            return self._refuse(request, 400, "Choose a file to upload.")
        if Path(sent.filename).suffix.lower() not in SUFFIXES:
            return self._refuse(
                request, 400, f"{sent.filename}: the importer reads {', '.join(SUFFIXES)} files."
            )
        upload = self.uploads.new(sent.filename)
        size = 0
        with upload.path.open("wb") as handle:
            while chunk := await sent.read(1 << 20):
                size += len(chunk)
                if size > self.config.max_upload:
                    handle.close()
                    self.uploads.forget(upload)
                    return self._too_big(request)
                handle.write(chunk)
        upload.save()
        if upload.path.suffix.lower() in WORKBOOK_SUFFIXES:
            try:
                sheets = await off_loop(lambda: list_sheets(upload.path))
            except ImporterError as exc:
                message = self.plain(exc, upload)
                self.uploads.forget(upload)
                return self._refuse(request, 400, message)
            if len(sheets) > 1:
                return RedirectResponse(f"/u/{upload.id}/sheet", status_code=303)
        # (A text that reads two ways: the Map step sends the person to choose the encoding.)
        return RedirectResponse(f"/u/{upload.id}/map", status_code=303)

    async def encoding(self, request: Request) -> Response:
        """Which encoding reads the text file right: each that reads it, with a line read so
        (the readings the importer could not choose between first)."""
        upload = self._upload(request)
        if upload.path.suffix.lower() in WORKBOOK_SUFFIXES:
            return RedirectResponse(f"/u/{upload.id}/map", status_code=303)  # no encoding
        form = await request.form() if request.method == "POST" else None
        if form is not None:
            check_csrf(request, form.get("csrf"))
        ambiguous: list[str] = []
        detected: str | None = None
        try:
            detected, _ = await off_loop(lambda: detect_encoding(upload.path))
        except AmbiguousEncoding as exc:
            ambiguous = [encoding for encoding, _, _ in exc.readings]
        except ImporterError as exc:
            return self._refuse(request, 400, self.plain(exc, upload))
        first = [e for e in (upload.encoding, *ambiguous, detected) if e]
        choices = await off_loop(lambda: encoding_choices(upload.path, first))
        if form is not None:
            chosen = str(form.get("encoding") or "")
            if chosen not in {e for e, _ in choices}:
                return self._refuse(request, 400, f"{chosen!r} does not read {upload.name}.")
            upload.encoding = chosen
            self._save(upload)
            return RedirectResponse(f"/u/{upload.id}/map", status_code=303)
        current = upload.encoding or detected
        return self.render(request, "encoding.html", upload=upload, choices=choices,
                           current=current, unsure=bool(ambiguous))  # fmt: skip

    async def header(self, request: Request) -> Response:
        """The row the column names are read from: a number, or blank for the one the importer
        finds. Other columns mean a mapping decided anew (the choices named the old ones)."""
        upload = self._upload(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        given = str(form.get("header_row") or "").strip()
        try:
            settings_options({"header_row": given})
        except ImporterError as exc:
            return self._refuse(request, 400, self.plain(exc, upload),
                                back=f"/u/{upload.id}/map")  # fmt: skip
        settings = {k: v for k, v in upload.settings.items() if k != "header_row"}
        if given:
            settings["header_row"] = str(int(given))
        if settings != upload.settings:
            upload.settings, upload.choices, upload.values = settings, {}, {}
            upload.reused = False
            self._save(upload)
        return RedirectResponse(f"/u/{upload.id}/map", status_code=303)

    async def sheet(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form() if request.method == "POST" else None
        if form is not None:
            check_csrf(request, form.get("csrf"))
        if upload.path.suffix.lower() not in WORKBOOK_SUFFIXES:
            return RedirectResponse(f"/u/{upload.id}/map", status_code=303)  # one table
        try:
            sheets = await off_loop(lambda: list_sheets(upload.path))
        except ImporterError as exc:
            return self._refuse(request, 400, self.plain(exc, upload))
        if form is not None:
            chosen = str(form.get("sheet") or "")
            if chosen not in sheets:
                return self._refuse(request, 400, f"No sheet {chosen!r} in {upload.name}.")
            upload.sheet, upload.choices = chosen, {}
            self._save(upload)
            return RedirectResponse(f"/u/{upload.id}/map", status_code=303)
        return self.render(request, "sheet.html", upload=upload, sheets=sheets)

    async def mapping(self, request: Request) -> Response:
        upload = self._upload(request)
        if request.method == "POST":
            form = await request.form()
            check_csrf(request, form.get("csrf"))
            profile = str(form.get("profile") or "") or None
            if profile is not None and profile not in PROFILES:
                return self._refuse(request, 400, f"No profile {profile!r}.")
            if profile != upload.profile:
                upload.profile, upload.choices = profile, {}  # a new profile decides anew
            else:
                choices = {}
                for key, value in form.multi_items():
                    if key.startswith("column:"):
                        field = str(value)
                        if field not in ("", *TARGETS):
                            return self._refuse(request, 400, f"No field {field!r}.")
                        choices[key.removeprefix("column:")] = field or None
                fed: dict[str, list[str]] = {}
                for column, chosen in choices.items():
                    if chosen:
                        fed.setdefault(chosen, []).append(column)
                twice = {f: c for f, c in fed.items() if len(c) > 1}
                if twice:
                    said = "; ".join(f"{' and '.join(map(repr, c))} both feed {LABELS[f]}"
                                     for f, c in twice.items())  # fmt: skip
                    return self._refuse(request, 400, f"One column a field: {said}. Choose "
                                        "one of them, and “not imported” for the others.",
                                        back=f"/u/{upload.id}/map")  # fmt: skip
                upload.choices = choices
                settings = {name: str(form.get(f"setting:{name}") or "").strip()
                            for name in SETTINGS}  # fmt: skip
                try:
                    settings_options(settings)
                except ImporterError as exc:
                    return self._refuse(request, 400, self.plain(exc, upload),
                                        back=f"/u/{upload.id}/map")  # fmt: skip
                upload.settings = {k: v for k, v in settings.items() if v}
                try:
                    upload.values = value_words(form)
                except ImporterError as exc:
                    return self._refuse(request, 400, self.plain(exc, upload),
                                        back=f"/u/{upload.id}/map")  # fmt: skip
                self.uploads.remember(choices.keys(), choices, upload.settings)
            self._save(upload)
            if form.get("next") == "check":
                await self._check(upload)
                return RedirectResponse(f"/u/{upload.id}/check", status_code=303)
            return RedirectResponse(f"/u/{upload.id}/map", status_code=303)
        options = self.options(upload)
        try:
            headers, mapping, samples, header_row = await off_loop(
                lambda: mapped_so_far(upload.path, options)
            )
        except AmbiguousEncoding:
            return RedirectResponse(f"/u/{upload.id}/encoding", status_code=303)
        except ImporterError as exc:
            return self.render(request, "mapping.html", upload=upload,
                               error=self.plain(exc, upload), rows=[], profiles=PROFILES,
                               status=400)  # fmt: skip
        if not upload.choices and not upload.reused and upload.profile is None:
            remembered = self.uploads.recall(headers)
            if remembered is not None:  # a sheet of these columns was mapped here before
                upload.choices, upload.settings = remembered
                upload.reused = True
                self._save(upload)
                return RedirectResponse(f"/u/{upload.id}/map", status_code=303)
        rows = describe_mapping(headers, mapping, upload.choices)
        # The words of the priority and status columns, each with how it is to be read.
        words = [(field, column, samples.get(column, []))
                 for column, field, _, _ in rows if field in VALUE_CHOICES]  # fmt: skip
        error: str | None = None
        warnings, count = list(mapping.warnings), None
        encoding: str | None = None
        try:
            prepared = await off_loop(lambda: prepare(upload.path, options))
            warnings, count = prepared.warnings, prepared.rows
            encoding = prepared.source.encoding
        except ImporterError as exc:
            # The columns are shown all the same, to choose what is missing.
            error = self.plain(exc, upload)
        legacy = encoding is not None and encoding.replace("-", "_") not in _UNICODE
        return self.render(request, "mapping.html", upload=upload, rows=rows, error=error,
                           profiles=PROFILES, warnings=warnings, count=count, samples=samples,
                           words=words, value_choices=VALUE_CHOICES, header_row=header_row,
                           encoding=encoding if legacy else None)  # fmt: skip

    async def mapping_file(self, request: Request) -> Response:
        upload = self._upload(request)
        options = self.options(upload)
        headers, mapping, _, _ = await off_loop(lambda: mapped_so_far(upload.path, options))
        described = describe_mapping(headers, mapping, upload.choices)
        text = mapping_toml({column: field for column, field, _, _ in described}, upload.profile,
                            upload.values)  # fmt: skip
        name = f"{upload.stem}.mapping.toml"
        return Response(text, media_type="application/toml", headers=attachment(name))

    async def _check(self, upload: Upload, changed: Collection[int] | None = None) -> None:
        """Check the rows as a run would (off the event loop) and keep what it found, for the
        check page to show. After a correction (``changed``: the rows it touched) only those
        rows are checked again and merged into the last full check, while what is decided from
        every row (the date order) stays the same; else every row is, and the verdicts go to
        the upload's validation sheet."""
        async with upload.checking:
            await self._check_now(upload, changed)

    async def _check_now(self, upload: Upload, changed: Collection[int] | None) -> None:
        decided = upload.decided()
        before = upload.checked
        if (
            changed is not None
            and before is not None
            and before.summary is not None
            and before.decided[:3] == decided[:3]
        ):
            try:
                again = await self._recheck(upload, before, frozenset(changed), decided)
            except (ImporterError, IvvyError):
                again = None  # said again by the full check below
            if again is not None:
                upload.checked = again
                return
        try:
            summary, verdicts = await self._validated(upload, upload.validation_path)
        except (ImporterError, IvvyError) as exc:
            upload.checked = Checked(decided, None, self.plain(exc, upload))
            return
        name = await off_loop(lambda: self._name_column(upload))
        try:
            table = await off_loop(lambda: CheckedRows.build(upload.folder / "check.sqlite",
                                                             upload.validation_path))  # fmt: skip
        except (OSError, sqlite3.Error) as exc:  # a full disk, say: said, with the way back
            upload.checked = Checked(decided, None, self.plain(exc, upload))
            return
        upload.checked = Checked(decided, summary, None, verdicts=verdicts, name_column=name,
                                 rows=table)  # fmt: skip

    def _name_column(self, upload: Upload) -> str | None:
        """The column the task's name comes from (the check table keeps it in sight)."""
        _, _, mapping = open_mapped(upload.path, self.options(upload), require=False)
        return mapping.columns.get("name")

    async def _validated(
        self, upload: Upload, results: Path, numbers: Collection[int] | None = None
    ) -> tuple[RunSummary, dict[int, Verdict]]:
        """``validate_source`` of the upload as decided (of the rows ``numbers`` only, when
        given), in a thread of its own, its verdicts to ``results``: the summary, and each
        row's verdict."""
        # The upload's row cache: a check of every row keeps the rows it read, so that a
        # re-check after a correction reads that row alone, from memory.
        options = self.options(upload, results=results, row_cache=upload.row_cache)
        verdicts: dict[int, Verdict] = {}

        async def validate() -> RunSummary:
            async with IvvyClient(self.config.credentials) as client:
                return await validate_source(upload.path, client, options, numbers=numbers,
                                             on_verdict=collect_verdicts(verdicts))  # fmt: skip

        return await off_loop(lambda: asyncio.run(validate())), verdicts

    async def _recheck(
        self, upload: Upload, before: Checked, changed: frozenset[int], decided: tuple[Any, ...]
    ) -> Checked | None:
        """The rows ``changed`` checked again and merged into ``before``; None when what is
        decided from every row changed with them (then every row must be checked)."""
        assert before.summary is not None
        again_path = upload.folder / f"{upload.stem}.recheck{upload.validation_path.suffix}"
        summary, verdicts = await self._validated(upload, again_path, changed)
        if summary.rules != before.summary.rules:
            return None
        counts, codes, plan = (Counter(before.summary.counts), Counter(before.summary.codes),
                               Counter(before.summary.plan))  # fmt: skip
        for number in changed:
            for sign, verdict in ((-1, before.verdicts.get(number)), (1, verdicts.get(number))):
                if verdict is None:
                    continue
                counts[verdict.result] += sign
                plan[verdict.verb] += sign
                if verdict.code is not None:
                    codes[verdict.code] += sign
        merged = dataclasses.replace(summary, counts=+counts, codes=+codes, plan=+plan)
        gone = changed - verdicts.keys()  # (made blank: no row any more)
        table = before.rows
        if table is None:
            return None
        await off_loop(lambda: table.replace_from(again_path, gone))
        return Checked(decided, merged, None, verdicts={**before.verdicts, **verdicts},
                       rechecked=before.rechecked | changed, name_column=before.name_column,
                       rows=table)  # fmt: skip

    async def check(self, request: Request) -> Response:
        """POST: check the rows (what the person decided so far). GET: what the last check
        found, or, when the choices or corrections changed since, a button to check again."""
        upload = self._upload(request)
        view = _View.of(request.query_params)
        errors_only = view.errors
        if request.method == "POST":
            form = await request.form()
            check_csrf(request, form.get("csrf"))
            await self._check(upload)
            back = "?errors=1" if errors_only or form.get("errors_only") == "1" else ""
            return RedirectResponse(f"/u/{upload.id}/check{back}", status_code=303)
        checked = upload.checked
        if checked is None or checked.decided != upload.decided():
            return self.render(request, "check.html", upload=upload, error=None, stale=True)
        if checked.error is not None:
            return self.render(request, "check.html", upload=upload, error=checked.error,
                               status=400)  # fmt: skip
        summary = checked.summary
        assert summary is not None
        table = checked.rows
        assert table is not None
        data_headers = table.headers

        def view_of(page: int) -> tuple[int, int, list[dict[str, Any]]]:
            return table.view(errors=view.errors, code=view.code, column=view.column,
                              offset=(page - 1) * SHOWN_ROWS, limit=SHOWN_ROWS)  # fmt: skip

        total, picked, shown = await off_loop(lambda: view_of(view.page))
        pages = max(1, -(-picked // SHOWN_ROWS))
        page = min(view.page, pages)
        if page != view.page:  # past the last page: the last one
            total, picked, shown = await off_loop(lambda: view_of(page))
        codes = sorted(
            ((code, n, describe_code(code)) for code, n in summary.codes.items()),
            key=lambda item: -item[1],
        )
        plan = [(verb, summary.plan[verb]) for verb in PLAN_ORDER if summary.plan.get(verb)]
        refusal = self.plain(Exception(summary.refusal), upload) if summary.refusal else None
        previous = self.plain(Exception(summary.previous), upload) if summary.previous else None
        return self.render(request, "check.html", upload=upload, error=None, summary=summary,
                           headers=data_headers, rows=shown, codes=codes,
                           errors_only=errors_only, total=total, plan=plan,
                           view=view, picked=picked, page=page, pages=pages,
                           first=(page - 1) * SHOWN_ROWS + 1,
                           refusal=refusal and for_the_page(refusal), previous=previous,
                           corrections=sorted(upload.fixes.items()),
                           fixed={(n, c) for n, c in upload.fixes},
                           choosing=choosing(upload.choices),
                           pinned=checked.name_column if checked.name_column in data_headers
                           else None)  # fmt: skip

    async def replace(self, request: Request) -> Response:
        """Every cell of one column that reads ``find`` corrected to ``to`` (as one correction
        each: each can be taken back), and those rows checked again."""
        upload = self._upload(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        back = f"/u/{upload.id}/check"
        checked = upload.checked
        if checked is None or checked.decided != upload.decided() or checked.error:
            return self._refuse(request, 400, "Check the rows first: replacing works on the "
                                "rows as the last check read them.", back=back)  # fmt: skip
        column, find = str(form.get("column") or ""), str(form.get("find") or "")
        to = str(form.get("to") or "")
        table = checked.rows
        assert table is not None
        if column not in table.headers:
            return self._refuse(request, 400, f"No column {column!r}.", back=back)
        numbers = await off_loop(lambda: table.numbers_reading(column, find))
        if not numbers:
            return self._refuse(request, 400, f"No cell of {column!r} reads {find!r}.", back=back)
        for number in numbers:
            upload.fixes[(number, column)] = to
        upload.save()
        await self._check(upload, changed=numbers)
        query = _View.of(form).query()
        return RedirectResponse(f"{back}{'?' + query if query else ''}", status_code=303)

    async def fix(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        try:
            number, column = int(str(form.get("row"))), str(form.get("column"))
        except ValueError:
            return self._refuse(request, 400, "Which row? (a row number was expected)")
        upload.fixes[(number, column)] = str(form.get("value") or "")
        upload.save()
        await self._check(upload, changed={number})
        if form.get("back") == "import":  # made on the done page: back to it
            return RedirectResponse(f"/u/{upload.id}/import#row-{number}", status_code=303)
        back = _View.of(form).query()  # the view the fix was made in, kept
        return RedirectResponse(
            f"/u/{upload.id}/check{'?' + back if back else ''}#row-{number}", status_code=303
        )

    async def unfix(self, request: Request) -> Response:
        """A correction taken back (or all of this sheet's): the cell reads as the file has it."""
        upload = self._upload(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        if form.get("all") == "1":
            changed = {n for n, _ in upload.fixes}
            upload.fixes.clear()
        else:
            try:
                number = int(str(form.get("row")))
            except ValueError:
                return self._refuse(request, 400, "Which row? (a row number was expected)")
            upload.fixes.pop((number, str(form.get("column"))), None)
            changed = {number}
        upload.save()
        await self._check(upload, changed=changed)
        return RedirectResponse(f"/u/{upload.id}/check", status_code=303)

    async def corrected(self, request: Request) -> Response:
        """The sheet with the corrections and the verdicts of a check of every row. GET: the
        file, when the last check was of every row as the person decided now; else a button.
        POST: every row checked, then the file."""
        upload = self._upload(request)
        if request.method == "POST":
            form = await request.form()
            check_csrf(request, form.get("csrf"))
            await self._check(upload)
            return RedirectResponse(f"/u/{upload.id}/corrected", status_code=303)
        checked = upload.checked
        whole = (
            checked is not None
            and checked.summary is not None
            and checked.decided == upload.decided()
            and not checked.rechecked
            and upload.validation_path.exists()
        )
        if not whole:
            return self.render(request, "check.html", upload=upload, error=None, stale=True,
                               download=True)  # fmt: skip
        name = f"{upload.stem}.corrected{upload.validation_path.suffix}"
        data = await off_loop(upload.validation_path.read_bytes)
        return Response(data, headers=attachment(name),
                        media_type=content_type(upload.validation_path))  # fmt: skip

    async def import_page(self, request: Request) -> Response:
        upload = self._upload(request)
        if request.method == "POST":
            form = await request.form()
            check_csrf(request, form.get("csrf"))
            running = upload.progress is not None and not upload.progress.finished
            if not running:
                again = form.get("again") == "1"
                self._start(upload, resume=upload.needs_resume and not again, new_run=again,
                            update_existing=form.get("update_existing") == "1")  # fmt: skip
            return RedirectResponse(f"/u/{upload.id}/import", status_code=303)
        progress = upload.progress
        busy = self._importer.name if self._importer is not None else None
        summary = progress.summary if progress else None
        headers: list[str] = []
        needing: list[dict[str, Any]] = []
        more = 0
        counts = summary.counts if summary is not None else {}
        if (counts.get("invalid") or counts.get("failed")) and upload.results_path.exists():
            headers, needing, more = await off_loop(lambda: _not_imported(upload))
        return self.render(request, "import.html", upload=upload, progress=progress,
                           summary=summary, busy=busy, headers=headers,
                           needing=needing, more=more,
                           choosing=choosing(upload.choices), fixes=upload.fixes,
                           by_result=bars(counts), by_code=bars(summary.codes if summary else {}),
                           colours=BAR_COLOURS)  # fmt: skip

    def _start(
        self, upload: Upload, *, resume: bool, new_run: bool, update_existing: bool = False
    ) -> None:
        progress = Progress()
        upload.progress = progress
        upload.not_imported = None  # (the results are written anew)

        options = self.options(upload, results=upload.results_path, resume=resume,
                               new_run=new_run, update_existing=update_existing)  # fmt: skip

        async def run() -> RunSummary:
            # In a thread of its own, on a loop of its own: the page answers meanwhile.
            async with IvvyClient(self.config.credentials) as client:
                return await run_import(upload.path, client, options, stop=progress.stopper(),
                                        on_event=progress.heard)  # fmt: skip

        async def go() -> None:
            try:
                progress.queued = self._importing.locked()
                async with self._importing:  # its turn: the imports share the journal
                    progress.queued = False
                    if progress.stopped:  # stopped (or the server stopping) before its turn
                        progress.error = "stopped before it began: nothing was sent"
                        return
                    was_imported = upload.imported
                    upload.imported, upload.finished = True, False
                    upload.save()
                    self._importer = upload
                    try:
                        await self._import(upload, progress, run, was_imported)
                    finally:
                        self._importer = None
            finally:
                progress.queued = False
                progress.finished = True
                upload.save()

        progress.task = asyncio.get_running_loop().create_task(go())

    async def _import(
        self,
        upload: Upload,
        progress: Progress,
        run: Callable[[], Coroutine[Any, Any, RunSummary]],
        was_imported: bool,
    ) -> None:
        """The import of ``upload``, its turn come; its results kept for the page."""
        try:
            summary = await off_loop(lambda: asyncio.run(run()))
            progress.summary = summary
            upload.finished = not summary.interrupted
            if upload.finished:
                results = upload.results_path
                upload.downloads["results"] = results.read_bytes()
                upload.downloads["to-fix"] = await off_loop(lambda: rows_to_fix(results))
        except (ImporterError, IvvyError) as exc:
            # Refused before anything was sent: the upload is as it was before.
            upload.imported = was_imported
            progress.error = self.plain(exc, upload)
        except Exception as exc:  # shown on the page, logged with its details
            log.exception("import of %s failed", upload.name)
            progress.error = f"unexpected error ({type(exc).__name__}); see the server's log"

    async def progress(self, request: Request) -> Response:
        upload = self._upload(request)
        if upload.progress is None:
            return JSONResponse({"finished": False, "started": False})
        data = upload.progress.as_dict()
        summary = upload.progress.summary
        if summary is not None:
            data["counts"] = dict(summary.counts)
            data["interrupted"] = summary.interrupted
        return JSONResponse(data)

    async def stop(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        progress = upload.progress
        if progress is not None:
            progress.stop_run()
            if progress.queued and progress.task is not None:  # nothing of it sent
                progress.task.cancel()  # it stops waiting at once
                await asyncio.wait([progress.task], timeout=self.config.stop_wait)
        return RedirectResponse(f"/u/{upload.id}/import", status_code=303)

    async def results(self, request: Request) -> Response:
        """The results sheet (downloading it changes nothing: the upload is removed by its
        Remove button, or when the server stops)."""
        return self._download(self._upload(request), "results")

    async def to_fix(self, request: Request) -> Response:
        """The rows that need a person, as a results sheet of their own."""
        return self._download(self._upload(request), "to-fix")

    def _download(self, upload: Upload, kind: str) -> Response:
        data = upload.downloads.get(kind)
        if data is None:
            return RedirectResponse(f"/u/{upload.id}/import", status_code=303)
        return Response(data, media_type=content_type(Path("x.xlsx")),
                        headers=attachment(f"{upload.stem}.{kind}.xlsx"))  # fmt: skip

    async def remove(self, request: Request) -> Response:
        """The upload removed from this computer: its file, corrections and results (a run
        going on is stopped first, and where it stopped stays in the journal)."""
        upload = self._upload(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        progress = upload.progress
        if progress is not None and progress.task is not None and not progress.finished:
            progress.stop_run()
            if progress.queued:  # nothing of it sent: it stops waiting at once
                progress.task.cancel()
            await asyncio.wait([progress.task], timeout=self.config.stop_wait)
        self.uploads.forget(upload)
        return RedirectResponse("/", status_code=303)

    async def shutdown(self) -> None:
        """Stop the runs going on (their journal says where; the page resumes them after a
        restart), then remove every upload's folder but theirs."""
        running = [u.progress for u in self.uploads.by_id.values()
                   if u.progress is not None and u.progress.task is not None
                   and not u.progress.finished]  # fmt: skip
        for progress in running:
            progress.stop_run()
        tasks = [p.task for p in running if p.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.stop_wait)
        self.uploads.close()

    # -- refusals -------------------------------------------------------------------------

    def _refuse(
        self, request: Request, status: int, message: str, back: str | None = None
    ) -> Response:
        """A page saying what did not work, with a way on (``back``: the step to go back to;
        the home page is always offered)."""
        return self.render(request, "error.html", status=status, message=message, back=back)

    def _too_big(self, request: Request) -> Response:
        limit = self.config.max_upload >> 20
        return self._refuse(
            request,
            413,
            f"The file is larger than {limit} MB, the most this page takes. Import it with "
            "the command line instead: task-import run FILE (it streams any size).",
        )
