"""The page: upload, map, check and fix, import with live progress, download the results.

Every stage is the library's own (``prepare``, ``validate_source``, ``run_import``); the page
only keeps what a person decided (the sheet, the column choices, the corrected cells) and hands
it to them as a run's options: a mapping file written in the upload's folder, and corrections
that the reader applies as it reads (the uploaded file is never changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import hmac
import io
import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openpyxl
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..client import Credentials, IvvyClient, IvvyError
from ..errors import ImporterError
from ..fields import describe_code
from ..map import TARGETS, ColumnMapping, toml_string
from ..options import RunOptions
from ..pipeline import run_import, validate_source
from ..plan import CREATE, INVALID, KEPT, UNCHANGED, UPDATE, UPDATE_THEIRS
from ..prepare import open_mapped, prepare
from ..profiles import PROFILES
from ..read import WORKBOOK_SUFFIXES, list_sheets
from ..results import RESULT_COLUMNS, unneutralise
from ..summary import RunSummary
from ._state import Checked, Progress, Upload, Uploads, Verdict

log = logging.getLogger("importer.serve")
T = TypeVar("T")

SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
#: Rows a check page shows at most (the downloads hold them all).
SHOWN_ROWS = 500
CSRF_COOKIE = "ivvy_csrf"
TOKEN_COOKIE = "ivvy_token"
HOW = {
    "field name": "certain: the field's own name",
    "alias": "sure: a name the importer knows",
    "results sheet": "sure: the earlier results' task id",
}


@dataclass
class ServeConfig:
    """How the page runs: where it sends, where uploads and journals go, its limits."""

    credentials: Credentials
    uploads: Path
    state: Path | None = None
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


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host values of a page served on loopback at ``port``."""
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


class Page:
    """The application and its state."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.uploads = Uploads(config.uploads)
        folder = Path(__file__).with_name("templates")
        self.templates = Jinja2Templates(directory=str(folder))
        self.templates.env.globals["targets"] = TARGETS
        self.starlette = Starlette(
            routes=[
                Route("/", self.home),
                Route("/upload", self.upload, methods=["POST"]),
                Route("/u/{id}/sheet", self.sheet, methods=["GET", "POST"]),
                Route("/u/{id}/map", self.mapping, methods=["GET", "POST"]),
                Route("/u/{id}/mapping.toml", self.mapping_file),
                Route("/u/{id}/check", self.check, methods=["GET", "POST"]),
                Route("/u/{id}/fix", self.fix, methods=["POST"]),
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
        self.starlette.add_middleware(_Guard, page=self)
        #: The application: the security headers go on every answer, a 500 included (they are
        #: added outside Starlette's own error handling).
        self.app = _Secured(self.starlette)

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
            raise _NotFound
        return upload

    def options(self, upload: Upload, **more: Any) -> RunOptions:
        """The run's options for what the person decided; reading them changes nothing (the
        mapping file is written when the choices are saved, by a POST)."""
        mapping = upload.folder / "mapping.toml"
        # The page writes its own mapping file: naming the id column there is not the
        # person's say-so to update tasks this tool did not make (the check page asks).
        more.setdefault("update_existing", False)
        return RunOptions(
            sheet=upload.sheet,
            profile=upload.profile if not upload.choices else None,
            mapping=mapping if upload.choices else None,
            fixes=dict(upload.fixes) or None,
            state=self.config.state,
            **more,
        )

    def _save(self, upload: Upload) -> None:
        """What the person decided, kept (and the mapping file the runs read)."""
        if upload.choices:
            text = mapping_toml(upload.choices, upload.profile)
            (upload.folder / "mapping.toml").write_text(text, encoding="utf-8")
        upload.save()

    def plain(self, exc: BaseException, upload: Upload | None = None) -> str:
        """A message for the page: no server path (a file is named by its name), no other
        upload's folder, nothing of the credentials."""
        return scrubbed(str(exc), upload, self.config.credentials)

    # -- routes -------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        waiting = [u for u in self.uploads.by_id.values() if u.needs_resume]
        return self.render(request, "upload.html", waiting=waiting,
                           limit_mb=self.config.max_upload >> 20, suffixes=SUFFIXES)  # fmt: skip

    async def upload(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None:
            return self._refuse(request, 411, "The upload did not say its size: try again.")
        if int(length) > self.config.max_upload + 64 * 1024:
            return self._too_big(request)
        form = await request.form(max_files=1, max_fields=10)
        _check_csrf(request, form.get("csrf"))
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
        return RedirectResponse(f"/u/{upload.id}/map", status_code=303)

    async def sheet(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form() if request.method == "POST" else None
        if form is not None:
            _check_csrf(request, form.get("csrf"))
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
            _check_csrf(request, form.get("csrf"))
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
                upload.choices = choices
            self._save(upload)
            if form.get("next") == "check":
                await self._check(upload)
                return RedirectResponse(f"/u/{upload.id}/check", status_code=303)
            return RedirectResponse(f"/u/{upload.id}/map", status_code=303)
        options = self.options(upload)
        try:
            headers, mapping = await off_loop(lambda: mapped_so_far(upload.path, options))
        except ImporterError as exc:
            return self.render(request, "mapping.html", upload=upload,
                               error=self.plain(exc, upload), rows=[], profiles=PROFILES,
                               status=400)  # fmt: skip
        rows = describe_mapping(headers, mapping, upload.choices)
        error: str | None = None
        warnings, count = list(mapping.warnings), None
        try:
            prepared = await off_loop(lambda: prepare(upload.path, options))
            warnings, count = prepared.warnings, prepared.rows
        except ImporterError as exc:
            # The columns are shown all the same, to choose what is missing.
            error = self.plain(exc, upload).replace(
                "Rename a column, or give --mapping or --profile",
                "Choose below which column holds it.",
            )
        return self.render(request, "mapping.html", upload=upload, rows=rows, error=error,
                           profiles=PROFILES, warnings=warnings, count=count)  # fmt: skip

    async def mapping_file(self, request: Request) -> Response:
        upload = self._upload(request)
        options = self.options(upload)
        headers, mapping = await off_loop(lambda: mapped_so_far(upload.path, options))
        described = describe_mapping(headers, mapping, upload.choices)
        text = mapping_toml({column: field for column, field, _ in described}, upload.profile)
        name = f"{upload.stem}.mapping.toml"
        return Response(text, media_type="application/toml", headers=_attachment(name))

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
        upload.checked = Checked(decided, summary, None, verdicts=verdicts)

    async def _validated(
        self, upload: Upload, results: Path, numbers: Collection[int] | None = None
    ) -> tuple[RunSummary, dict[int, Verdict]]:
        """``validate_source`` of the upload as decided (of the rows ``numbers`` only, when
        given), in a thread of its own, its verdicts to ``results``: the summary, and each
        row's verdict."""
        options = self.options(upload, results=results)
        verdicts: dict[int, Verdict] = {}

        async def validate() -> RunSummary:
            async with IvvyClient(self.config.credentials) as client:
                return await validate_source(upload.path, client, options, numbers=numbers,
                                             on_verdict=_collect(verdicts))  # fmt: skip

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
        _, rows = await off_loop(lambda: read_verdicts(again_path))
        overlay = {**before.overlay, **{int(r["row"]): r for r in rows}}
        for number in changed - verdicts.keys():
            overlay.pop(number, None)
        return Checked(decided, merged, None, verdicts={**before.verdicts, **verdicts},
                       overlay=overlay)  # fmt: skip

    async def check(self, request: Request) -> Response:
        """POST: check the rows (what the person decided so far). GET: what the last check
        found, or, when the choices or corrections changed since, a button to check again."""
        upload = self._upload(request)
        errors_only = request.query_params.get("errors") == "1"
        if request.method == "POST":
            form = await request.form()
            _check_csrf(request, form.get("csrf"))
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
        data_headers, rows = await off_loop(lambda: read_verdicts(upload.validation_path))
        if checked.overlay:  # rows checked again since: as they read now
            rows = [checked.overlay.get(int(r["row"]), r) for r in rows]
        shown = [r for r in rows if not errors_only or r["result"] != "valid"][:SHOWN_ROWS]
        codes = sorted(
            ((code, n, describe_code(code)) for code, n in summary.codes.items()),
            key=lambda item: -item[1],
        )
        plan = [(verb, summary.plan[verb]) for verb in PLAN_ORDER if summary.plan.get(verb)]
        refusal = self.plain(Exception(summary.refusal), upload) if summary.refusal else None
        previous = self.plain(Exception(summary.previous), upload) if summary.previous else None
        return self.render(request, "check.html", upload=upload, error=None, summary=summary,
                           headers=data_headers, rows=shown, codes=codes,
                           errors_only=errors_only, total=len(rows), plan=plan,
                           refusal=refusal and _for_the_page(refusal), previous=previous,
                           corrections=sorted(upload.fixes.items()),
                           fixed={(n, c) for n, c in upload.fixes})  # fmt: skip

    async def fix(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form()
        _check_csrf(request, form.get("csrf"))
        try:
            number, column = int(str(form.get("row"))), str(form.get("column"))
        except ValueError:
            return self._refuse(request, 400, "Which row? (a row number was expected)")
        upload.fixes[(number, column)] = str(form.get("value") or "")
        upload.save()
        await self._check(upload, changed={number})
        back = "?errors=1" if form.get("errors_only") == "1" else ""
        return RedirectResponse(f"/u/{upload.id}/check{back}#row-{number}", status_code=303)

    async def unfix(self, request: Request) -> Response:
        """A correction taken back (or all of this sheet's): the cell reads as the file has it."""
        upload = self._upload(request)
        form = await request.form()
        _check_csrf(request, form.get("csrf"))
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
            _check_csrf(request, form.get("csrf"))
            await self._check(upload)
            return RedirectResponse(f"/u/{upload.id}/corrected", status_code=303)
        checked = upload.checked
        whole = (
            checked is not None
            and checked.summary is not None
            and checked.decided == upload.decided()
            and not checked.overlay
            and upload.validation_path.exists()
        )
        if not whole:
            return self.render(request, "check.html", upload=upload, error=None, stale=True,
                               download=True)  # fmt: skip
        name = f"{upload.stem}.corrected{upload.validation_path.suffix}"
        data = await off_loop(upload.validation_path.read_bytes)
        return Response(data, headers=_attachment(name),
                        media_type=_media(upload.validation_path))  # fmt: skip

    async def import_page(self, request: Request) -> Response:
        upload = self._upload(request)
        if request.method == "POST":
            form = await request.form()
            _check_csrf(request, form.get("csrf"))
            running = upload.progress is not None and not upload.progress.finished
            if not running:
                again = form.get("again") == "1"
                self._start(upload, resume=upload.needs_resume and not again, new_run=again,
                            update_existing=form.get("update_existing") == "1")  # fmt: skip
            return RedirectResponse(f"/u/{upload.id}/import", status_code=303)
        progress = upload.progress
        return self.render(request, "import.html", upload=upload, progress=progress,
                           summary=progress.summary if progress else None)  # fmt: skip

    def _start(
        self, upload: Upload, *, resume: bool, new_run: bool, update_existing: bool = False
    ) -> None:
        progress = Progress()
        was_imported = upload.imported
        upload.progress, upload.imported, upload.finished = progress, True, False
        upload.save()

        options = self.options(upload, results=upload.results_path, resume=resume,
                               new_run=new_run, update_existing=update_existing)  # fmt: skip

        async def run() -> Any:
            # In a thread of its own, on a loop of its own: the page answers meanwhile.
            async with IvvyClient(self.config.credentials) as client:
                return await run_import(upload.path, client, options, stop=progress.stopper(),
                                        on_event=progress.heard)  # fmt: skip

        async def go() -> None:
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
            finally:
                progress.finished = True
                upload.save()

        progress.task = asyncio.get_running_loop().create_task(go())

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
        _check_csrf(request, form.get("csrf"))
        if upload.progress is not None:
            upload.progress.stop_run()
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
        return Response(data, media_type=_media(Path("x.xlsx")),
                        headers=_attachment(f"{upload.stem}.{kind}.xlsx"))  # fmt: skip

    async def remove(self, request: Request) -> Response:
        """The upload removed from this computer: its file, corrections and results (a run
        going on is stopped first, and where it stopped stays in the journal)."""
        upload = self._upload(request)
        form = await request.form()
        _check_csrf(request, form.get("csrf"))
        progress = upload.progress
        if progress is not None and progress.task is not None and not progress.finished:
            progress.stop_run()
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

    def _refuse(self, request: Request, status: int, message: str) -> Response:
        return self.render(request, "error.html", status=status, message=message)

    def _too_big(self, request: Request) -> Response:
        limit = self.config.max_upload >> 20
        return self._refuse(
            request,
            413,
            f"The file is larger than {limit} MB, the most this page takes. Import it with "
            "the command line instead: task-import run FILE (it streams any size).",
        )


class _NotFound(Exception):
    pass


class _CsrfError(Exception):
    pass


def _check_csrf(request: Request, sent: Any) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
        raise _CsrfError


#: On every answer of the page, errors included.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; "
     b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]  # fmt: skip


class _Secured:
    """The security headers on every answer: outside the application, so that an answer made
    by Starlette's own error handling (a 500) carries them too."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in {n for n, _ in SECURITY_HEADERS}
                ]
                message["headers"] = headers + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, secured)


class _Guard:
    """Every request, before any handler: a Host this page answers to (on loopback, its own
    names: a rebinding site gets 403), the access token (beyond loopback), the CSRF cookie, an
    Origin that is this page's own on every POST; refusals as pages."""

    def __init__(self, app: Callable[..., Awaitable[None]], page: Page) -> None:
        self.app = app
        self.page = page

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        hosts = self.page.config.hosts
        host = request.headers.get("host", "")
        if hosts is not None and host not in hosts:
            await _refused("Refused: this page answers only to its own address.")(
                scope, receive, send
            )
            return
        token = self.page.config.token
        set_token = False
        if token is not None and not hmac.compare_digest(
            request.cookies.get(TOKEN_COOKIE, ""), token
        ):
            if hmac.compare_digest(request.query_params.get("token", ""), token):
                set_token = True
            else:
                await _refused(
                    "Open the address task-import serve printed (it carries the access token)."
                )(scope, receive, send)
                return
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf"] = csrf
        if request.method not in ("GET", "HEAD", "POST"):
            await Response("Only GET and POST.", status_code=405)(scope, receive, send)
            return
        if request.method == "POST" and not _same_origin(request, hosts):
            await _refused("Refused: this form came from another site.")(scope, receive, send)
            return

        async def send_with_cookies(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                cookies = [f"{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; HttpOnly"]
                if set_token:
                    cookies.append(f"{TOKEN_COOKIE}={token}; Path=/; SameSite=Strict; HttpOnly")
                headers += [(b"set-cookie", c.encode()) for c in cookies]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookies)
        except _NotFound:
            await Response("No such upload (it may have been removed).",
                           status_code=404)(scope, receive, send_with_cookies)  # fmt: skip
        except _CsrfError:
            await _refused(
                "Refused: the form's token is missing or stale. Reload the page and try again."
            )(scope, receive, send_with_cookies)


def _collect(verdicts: dict[int, Verdict]) -> Callable[[Any, Any, str], None]:
    """A verdict collector for :func:`validate_source`: each row's verdict, kept small (alike
    verdicts are one object)."""
    alike: dict[Verdict, Verdict] = {}

    def collect(row: Any, outcome: Any, verb: str) -> None:
        verdict = Verdict(outcome.result, outcome.error_code, verb)
        verdicts[row.number] = alike.setdefault(verdict, verdict)

    return collect


def _refused(text: str) -> Response:
    return Response(text, status_code=403, media_type="text/plain")


def _same_origin(request: Request, hosts: frozenset[str] | None) -> bool:
    """Whether a POST comes from this page: no Origin (a browser sends one with every form
    post it makes across sites), or this page's own address."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    scheme, _, where = origin.partition("://")
    if scheme not in ("http", "https"):
        return False  # "null" (a sandboxed frame, a file) and anything else
    return where in hosts if hosts is not None else where == request.headers.get("host", "")


#: The plan's lines, in the order the check page shows them.
PLAN_ORDER = (CREATE, UPDATE, UPDATE_THEIRS, UNCHANGED, INVALID, KEPT)


def _for_the_page(message: str) -> str:
    """A refusal as the page says it: the page's own way on, not command-line options."""
    return message.split(" If the column holds")[0] + (
        " Choose “not imported” for that column on the Map step if it holds another system's "
        "ids, or tick the box below to update those tasks on purpose."
    )


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _media(path: Path) -> str:
    if path.suffix == ".csv":
        return "text/csv; charset=utf-8"
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


#: An absolute path in a message (a file, a folder, a journal), to be named by its last part.
_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"(),;]+)+/?")


def scrubbed(text: str, upload: Upload | None, credentials: Credentials | None) -> str:
    """``text`` as a page may show it: the upload's own file by its name, any other path by
    its last part (no server folder, no other upload's folder: its id opens its pages), and
    nothing of the credentials."""
    if upload is not None:
        text = text.replace(str(upload.path), upload.name).replace(str(upload.folder), "")
    text = _PATH.sub(lambda m: Path(m.group(0)).name or "/", text)
    if credentials is not None:
        for secret, said in ((credentials.secret, "(the API secret)"),
                             (credentials.key, "(the API key)")):  # fmt: skip
            if secret:
                text = text.replace(secret, said)
    return text


async def off_loop(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread of its own, awaited: the event loop answers every other
    request meanwhile, and a stop never waits for it (the process ends all the same)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            loop.call_soon_threadsafe(outcome)

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the request that awaits it
            failure = exc

            def failed() -> None:
                if not future.done():
                    future.set_exception(failure)

            settle(failed)
        else:

            def succeeded() -> None:
                if not future.done():
                    future.set_result(result)

            settle(succeeded)

    threading.Thread(target=run, daemon=True, name="page-work").start()
    return await future


def mapped_so_far(path: Path, options: RunOptions) -> tuple[list[str], ColumnMapping]:
    """The source's own headers and what the mapper decides for them, even while a field every
    create needs has no column yet."""
    source, earlier, mapping = open_mapped(path, options, require=False)
    return (source.headers[: -len(earlier)] if earlier else source.headers), mapping


def describe_mapping(
    headers: list[str], mapping: ColumnMapping, choices: dict[str, str | None]
) -> list[tuple[str, str, str]]:
    """Each source column: the field it feeds ("" for none) and how sure that is."""
    field_of = {column: field for field, column in mapping.columns.items()}
    rows = []
    for header in headers:
        field = field_of.get(header, "")
        if field == "id" and mapping.how.get("id") != "results sheet":
            how = (
                "task ids of unknown origin: the check asks before any task this tool did not "
                "make would be updated"
            )
        elif header in choices:
            how = "your choice" if choices[header] else "your choice: not imported"
        elif field:
            reason = mapping.how.get(field, "")
            how = HOW.get(reason, f"sure: {reason}" if reason else "")
        else:
            how = "not imported (kept in the results)"
        rows.append((header, field, how))
    return rows


def mapping_toml(columns: dict[str, str | None], profile: str | None) -> str:
    """The mapping as the ``--mapping`` file that a nightly run can reuse."""
    lines = ["# Made by task-import serve: give it to a run with --mapping"]
    if profile:
        lines.append(f'profile = "{profile}"')
    lines += ["", "[columns]"]
    for column, field in columns.items():
        lines.append(f"{toml_string(column)} = {toml_string(field or 'ignore')}")
    return "\n".join(lines) + "\n"


def read_verdicts(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A results sheet of ours: its source headers, and each row as a dict of those headers'
    cells (as the person wrote them) and of our columns by their own names."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            table: list[list[Any]] = list(csv.reader(handle))
    else:
        table = [["" if v is None else v for v in row] for row in _results_sheet(path)]
    count = len(RESULT_COLUMNS)
    headers = [str(h) for h in table[0][:-count]]
    rows = []
    for cells in table[1:]:
        row = {h: unneutralise(v) for h, v in zip(headers, cells, strict=False)}
        row.update(zip(RESULT_COLUMNS, cells[-count:], strict=True))
        rows.append(row)
    return headers, rows


def _results_sheet(path: Path) -> list[tuple[Any, ...]]:
    """The rows of an XLSX results sheet's Results sheet, its header first."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return list(book["Results"].iter_rows(values_only=True))
    finally:
        book.close()


def rows_to_fix(results: Path) -> bytes:
    """The rows of a results sheet that need a person, as an XLSX results sheet of their own
    (a source for ``run --only failed,invalid``)."""
    rows = _results_sheet(results)
    header = list(rows[0])
    result = len(header) - len(RESULT_COLUMNS) + RESULT_COLUMNS.index("result")
    out = openpyxl.Workbook(write_only=True)
    sheet = out.create_sheet("Results")
    sheet.append(header)
    for row in rows[1:]:
        if row[result] in ("invalid", "failed", "skipped"):
            sheet.append(list(row))
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue()
