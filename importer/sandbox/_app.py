"""The sandbox's HTTP app: the API under ``/api/1.0/{namespace}?action=...`` behind signature
checks and the fault knobs, and the inspection routes under ``/_sandbox/``.

Every knob is a field of :class:`SandboxConfig` with its help text, and ``task-import sandbox``
offers each one as an option. The defaults are as close to the reference as we know it (text as
HTML, strict types, ids of contacts and companies as strings, ``callbackUrl`` required, batch
results in any order); the faults are off until asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _reference as ref
from ._auth import Received, verify
from ._batch import Batches, QueueKnobs
from ._limits import make_limit
from ._refusal import Refusal
from ._seed import default_seed
from ._store import Store

#: Calls that only read: a dropped answer (``drop_rate``) is about writes done but not answered.
_READS = frozenset({"ping", "progress", "results"})

DEFAULT_KEY = "sandbox-key"
DEFAULT_SECRET = "sandbox-secret"


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; each field is a knob of ``task-import sandbox`` (``rate_limit``
    is ``--rate-limit``), with its help text in the field's metadata."""

    key: str = DEFAULT_KEY
    secret: str = field(default=DEFAULT_SECRET, repr=False)
    seed: Mapping[str, list[dict[str, Any]]] = field(default_factory=default_seed, repr=False)
    random_seed: int | None = _knob(None, "Make the injected faults repeatable.")
    # How iVvy stores and shows what it is sent.
    text: Literal["html", "verbatim"] = _knob(
        "html", "How stored text reads back: as iVvy shows it (html) or as sent (verbatim)."
    )
    strict_types: bool = _knob(
        True, "Refuse integers sent as strings and parameters the reference does not name."
    )
    string_ids: bool = _knob(True, "Show contacts' and companies' ids as numeric strings.")
    empty_text: Literal["keep", "clear", "refuse"] = _knob(
        "keep",
        "What a description sent empty does (the reference is silent): nothing, the field kept "
        "as if left out (keep); clears it (clear); or is refused, 24395 (refuse).",
    )
    ignore_filters: bool = _knob(False, "Lists ignore 'filter'.")
    read_lag_s: float = _knob(0.0, "A new task shows in getTaskList only this long after.")
    clock_skew_s: float = _knob(0.0, "The server's clock, this many seconds off from real time.")
    # Speed and limits.
    latency_ms: float = _knob(0.0, "Delay before each answer.")
    limit_kind: Literal["window", "bucket", "quota"] = _knob(
        "window",
        "The rate limit's kind: a sliding 1 s window, a token bucket with a burst, or a quota "
        "per period (--quota-period-s).",
    )
    rate_limit: float = _knob(0.0, "Requests per second per key (on average); 429 beyond.")
    burst: int = _knob(0, "The token bucket's size (default: twice the rate).")
    quota_period_s: float = _knob(60.0, "The quota's period: rate x period requests each.")
    retry_after: Literal["seconds", "date", "none"] = _knob(
        "seconds", "How a 429 says when to come back."
    )
    # Faults, each a share of the calls.
    fail_rate: float = _knob(0.0, "Answer 500, nothing done.")
    drop_rate: float = _knob(0.0, "Carry out a write, then drop the connection unanswered.")
    error_after_write_rate: float = _knob(0.0, "Carry out a write, then answer 500, 502 or 504.")
    late_write_rate: float = _knob(
        0.0, "Lose the answer and carry out the write only later (see --late-write-max-s)."
    )
    late_write_max_s: float = _knob(3.0, "How long after its lost answer a late write lands.")
    false_success_rate: float = _knob(0.0, "Answer a write {success: false}, nothing done.")
    busy_rate: float = _knob(0.0, "Answer 429 with specificCode 24299 (no Retry-After).")
    gateway_rate: float = _knob(0.0, "Answer 503 or 403 from a gateway (not JSON), nothing done.")
    session_end_after: int = _knob(0, "After this many API requests, end the session (0: never).")
    session_end_code: int = _knob(
        462, "How the session ends: 462 Session Expired, 463 Key Revoked."
    )
    other_writers: int = _knob(0, "Other clients creating tasks while the importer runs.")
    other_writer_every_ms: float = _knob(100.0, "How often each other writer creates a task.")
    other_identical_share: float = _knob(
        0.5, "The share of other writers' tasks identical to a task the importer sent."
    )
    # The batch queue.
    batch_queue_s: float = _knob(0.0, "How long a batch waits in the queue before it runs.")
    batch_jobs_per_s: float = _knob(0.0, "How fast a batch's jobs run (0: as fast as it can).")
    batch_order: Literal["shuffled", "in-order"] = _knob(
        "shuffled", "The order of a batch's results."
    )
    batch_stall_rate: float = _knob(0.0, "Batches that never complete.")
    batch_short_rate: float = _knob(0.0, "Completed batches whose results leave one job out.")
    require_callback: bool = _knob(True, "batch?action=run needs a callbackUrl.")
    keep_requests: int = _knob(500_000, "How many requests /_sandbox/requests keeps.")


#: The knobs of :class:`SandboxConfig` (everything but the key, secret and seed).
KNOBS = tuple(f for f in fields(SandboxConfig) if "help" in f.metadata)


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    failures_injected: int = 0
    drops: int = 0
    batch_jobs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "by_action": dict(self.by_action),
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "failures_injected": self.failures_injected,
            "drops": self.drops,
            "batch_jobs": self.batch_jobs,
        }


class _DropFlag:
    """Set by the API route when the answer must be dropped; read by :class:`SandboxApp`."""

    drop = False


class Sandbox:
    """The state of one sandbox: store, batches, knobs, counters and the requests received."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.random = random.Random(config.random_seed)
        self.store = Store(
            config.seed,
            ignore_filters=config.ignore_filters,
            text=config.text,
            strict_types=config.strict_types,
            string_ids=config.string_ids,
            empty_text=config.empty_text,
            read_lag=config.read_lag_s,
            clock=self.clock,
        )
        knobs = QueueKnobs(
            queue_s=config.batch_queue_s,
            jobs_per_s=config.batch_jobs_per_s,
            order=config.batch_order,
            stall_rate=config.batch_stall_rate,
            short_rate=config.batch_short_rate,
            require_callback=config.require_callback,
        )
        self.batches = Batches(self._run_job, knobs, self.random)
        self.handlers = {**self.store.handlers(), **self.batches.handlers()}
        self.started = time.monotonic()
        self._writers: list[asyncio.Task[None]] = []
        self._late: set[asyncio.TimerHandle] = set()
        self._fresh()

    def _fresh(self) -> None:
        self.stats = Stats()
        self.limit = make_limit(
            self.config.limit_kind,
            self.config.rate_limit,
            self.config.burst,
            self.config.quota_period_s,
        )
        self.requests: list[dict[str, Any]] = []
        self.api_requests = 0
        self.last_request_at = 0.0
        self.recent_creates: list[dict[str, Any]] = []

    def clock(self) -> datetime:
        """The server's clock: real time, off by ``clock_skew_s``."""
        return datetime.now(UTC) + timedelta(seconds=self.config.clock_skew_s)

    def reset(self) -> None:
        for handle in self._late:
            handle.cancel()
        self._late.clear()
        self.store.reset()
        self.batches.clear()
        self._fresh()

    def call(
        self,
        namespace: str,
        action: str,
        params: Any,
        origin: str = "client",
        request: int | None = None,
    ) -> Any:
        """Run one API call for ``origin`` (through request number ``request``, if any); the
        answer body, or a :class:`Refusal`."""
        handler = self.handlers.get((namespace, action))
        if handler is None:
            raise Refusal(404, f"Unknown action {namespace}?action={action}")
        if not isinstance(params, dict):
            raise Refusal(400, "The request body must be a JSON object", ref.DOES_NOT_VALIDATE)
        self.store.origin = origin
        self.store.request = request
        return handler(params)

    def _chance(self, share: float) -> bool:
        return share > 0 and self.random.random() < share

    async def _run_job(self, namespace: str, action: str, params: Any) -> dict[str, Any]:
        self.stats.batch_jobs += 1
        self.stats.by_action[f"{namespace}.{action}"] += 1
        if self._chance(self.config.fail_rate):
            self.stats.failures_injected += 1
            return Refusal(500, "Internal Server Error (injected by the sandbox)").body()
        if self._chance(self.config.false_success_rate):
            self.stats.faults["false_success"] += 1
            return {"success": False, "message": "The task could not be saved (sandbox)"}
        try:
            answer = self.call(namespace, action, params)
        except Refusal as refusal:
            return refusal.body()
        if self._chance(self.config.error_after_write_rate):
            self.stats.faults["error_after_write"] += 1
            return Refusal(500, "Internal Server Error (after the write)").body()
        return answer

    def too_many(self, wait: float) -> Response:
        self.stats.rate_limited += 1
        headers = {}
        if self.config.retry_after == "seconds":
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        elif self.config.retry_after == "date":
            when = datetime.now(UTC) + timedelta(seconds=max(1.0, wait))
            headers["Retry-After"] = format_datetime(when, usegmt=True)
        body = Refusal(429, "Too Many Requests").body()
        return JSONResponse(body, status_code=429, headers=headers)

    def _log(self, namespace: str, action: str, body: bytes) -> dict[str, Any]:
        try:
            parsed: Any = json.loads(body) if body.strip() else None
        except ValueError:
            parsed = None
        entry: dict[str, Any] = {
            "seq": self.stats.requests,
            "at": self.clock().strftime(ref.TIMESTAMP),
            # Seconds since the sandbox started, finer than ``at`` (for tests of pacing).
            "t": round(time.monotonic() - self.started, 4),
            "namespace": namespace,
            "action": action,
            "body": parsed,
            "status": None,
        }
        if parsed is None and body.strip():
            entry["raw"] = body.decode("utf-8", "replace")
        if action == "addOrUpdateTask" and isinstance(parsed, dict) and parsed.get("id") is None:
            # What other writers copy: every create asked for, whether or not it lands.
            self.recent_creates.append(parsed)
            del self.recent_creates[:-50]
        if len(self.requests) < self.config.keep_requests:
            self.requests.append(entry)
        return entry

    async def api(self, request: Request) -> Response:
        self.stats.requests += 1
        namespace = request.path_params["namespace"]
        action = request.query_params.get("action", "")
        body = await request.body()
        entry = self._log(namespace, action, body)
        response = await self._api(request, namespace, action, body, entry)
        entry["status"] = entry["status"] or response.status_code
        if response.status_code == 429:
            entry["retry_after"] = response.headers.get("retry-after")
        return response

    async def _api(
        self, request: Request, namespace: str, action: str, body: bytes, entry: dict[str, Any]
    ) -> Response:
        config = self.config
        self.last_request_at = time.monotonic()
        self._start_writers()
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        query = request.scope.get("query_string", b"").decode("latin-1")
        raw_path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        received = Received(
            method=request.method,
            request_uri=raw_path + (f"?{query}" if query else ""),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=body,
        )
        try:
            key = verify(received, {config.key: config.secret}, self.clock())
        except Refusal as refusal:
            return _refused(refusal)
        self.api_requests += 1
        if config.session_end_after and self.api_requests > config.session_end_after:
            code = config.session_end_code
            message = "Session Expired" if code == 462 else "Key Revoked"
            return _refused(Refusal(code, message))
        if self.limit is not None:
            wait = self.limit.wait(key, time.monotonic())
            if wait > 0:
                return self.too_many(wait)
        self.stats.by_action[f"{namespace}.{action}"] += 1
        if self._chance(config.gateway_rate):
            self.stats.faults["gateway"] += 1
            status = self.random.choice((503, 403))
            text = "Service Temporarily Unavailable" if status == 503 else "Forbidden"
            page = f"<html><body><h1>{status} {text}</h1></body></html>"
            return Response(page, status_code=status, media_type="text/html")
        if self._chance(config.busy_rate):
            self.stats.faults["busy"] += 1
            return _refused(Refusal(429, "Busy: please try again", ref.RACE))
        if self._chance(config.fail_rate):
            self.stats.failures_injected += 1
            return _refused(Refusal(500, "Internal Server Error (injected by the sandbox)"))
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError:
            return _refused(Refusal(400, "The request body is not valid JSON"))
        writes = not (action.startswith("get") or action in _READS)
        if writes and action == "addOrUpdateTask":
            if self._chance(config.false_success_rate):
                self.stats.faults["false_success"] += 1
                return JSONResponse({"success": False, "message": "The task could not be saved"})
            if self._chance(config.late_write_rate):
                self.stats.faults["late_write"] += 1
                self._later(namespace, action, params, entry["seq"])
                entry["status"] = "late"
                request.scope["sandbox.drop"].drop = True
                return JSONResponse({})
        try:
            answer = self.call(namespace, action, params, request=entry["seq"])
        except Refusal as refusal:
            return _refused(refusal)
        if writes and self._chance(config.drop_rate):
            self.stats.drops += 1
            entry["status"] = "dropped"
            request.scope["sandbox.drop"].drop = True
        elif writes and self._chance(config.error_after_write_rate):
            self.stats.faults["error_after_write"] += 1
            status = self.random.choice((500, 502, 504))
            return _refused(Refusal(status, "The server failed after the write"))
        return JSONResponse(answer)

    def _later(self, namespace: str, action: str, params: Any, seq: int) -> None:
        """Carry out a write whose answer is lost, some time after (it may then be refused)."""
        delay = self.random.uniform(0.0, self.config.late_write_max_s)
        generation = self.store

        def land() -> None:
            self._late.discard(handle)
            if self.store is not generation:
                return
            with contextlib.suppress(Refusal):  # refused now: nothing lands
                self.call(namespace, action, params, request=seq)

        handle = asyncio.get_running_loop().call_later(delay, land)
        self._late.add(handle)

    # ----- other writers ---------------------------------------------------------------------

    def _start_writers(self) -> None:
        if self._writers or not self.config.other_writers:
            return
        loop = asyncio.get_running_loop()
        self._writers = [
            loop.create_task(self._other_writer(n)) for n in range(1, self.config.other_writers + 1)
        ]

    async def _other_writer(self, number: int) -> None:
        """Creates a task every so often while the importer is busy (requests in the last 5 s):
        some a copy of a task the importer sent, the others its own."""
        made = 0
        every = self.config.other_writer_every_ms / 1000
        while made < OTHER_WRITER_MOST:
            await asyncio.sleep(every * self.random.uniform(0.5, 1.5))
            if time.monotonic() - self.last_request_at > 5.0:
                continue
            if self.recent_creates and self._chance(self.config.other_identical_share):
                params = copy.deepcopy(self.random.choice(self.recent_creates))
            else:
                due = (self.clock() + timedelta(days=1)).strftime(ref.TIMESTAMP)
                params = {"name": f"Other writer {number} task {made}", "endDatetime": due}
            try:
                self.call("crm", "addOrUpdateTask", params, origin=f"other-writer-{number}")
                made += 1
                self.stats.faults["other_writes"] += 1
            except Refusal:
                pass

    # ----- inspection ------------------------------------------------------------------------

    async def tasks(self, request: Request) -> Response:
        return JSONResponse(self.store.inspect_tasks())

    async def requests_route(self, request: Request) -> Response:
        """The requests received, oldest first; ``?action=`` keeps one action's, ``?since=N``
        those after sequence number N."""
        action = request.query_params.get("action")
        since = int(request.query_params.get("since") or -1)
        kept = [
            r
            for r in self.requests
            if r["seq"] > since and (action is None or r["action"] == action)
        ]
        return JSONResponse(kept)

    async def batches_route(self, request: Request) -> Response:
        return JSONResponse(self.batches.inspect())

    async def delete_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        if self.store.tasks.pop(task_id, None) is None:
            return JSONResponse({"deleted": False}, status_code=404)
        return JSONResponse({"deleted": True, "id": task_id})

    async def edit_task(self, request: Request) -> Response:
        """Change a task as a person would in iVvy (for tests of edits made meanwhile)."""
        task_id = request.path_params["task_id"]
        changes = await request.json()
        try:
            answer = self.call(
                "crm", "addOrUpdateTask", {**changes, "id": task_id}, origin="person"
            )
        except Refusal as refusal:
            return _refused(refusal)
        return JSONResponse(answer)

    async def stats_route(self, request: Request) -> Response:
        return JSONResponse(self.stats.as_dict())

    async def reset_route(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def not_allowed(self, request: Request) -> Response:
        return _refused(Refusal(405, "Method Not Allowed: every call is a POST"))


#: Most tasks one other writer makes (the sandbox stops by itself).
OTHER_WRITER_MOST = 5_000


def _refused(refusal: Refusal) -> Response:
    return JSONResponse(refusal.body(), status_code=refusal.error_code)


class SandboxApp:
    """The outermost ASGI layer: counts answers by status, and drops the connection without an
    answer where the API route asked for it (after the call was carried out)."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flag = _DropFlag()
        scope["sandbox.drop"] = flag

        async def guarded_send(message: Message) -> None:
            if flag.drop:
                if message["type"] == "http.response.start":
                    self.sandbox.stats.by_status["dropped"] += 1
                    await _close_without_answer(send, message)
                return
            if message["type"] == "http.response.start":
                if scope["path"].startswith("/api/"):
                    self.sandbox.stats.by_status[str(message["status"])] += 1
                # The server's own clock (skewed or not) in every answer's Date, as a web server
                # sends it: a client whose clock is off can learn the server's from it.
                date = format_datetime(self.sandbox.clock(), usegmt=True).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
            await send(message)

        await self.app(scope, receive, guarded_send)


async def _close_without_answer(send: Send, start: Message) -> None:
    # uvicorn's send is a method of the request cycle that owns the connection's transport:
    # closing it sends nothing at all, which is what a lost answer looks like to a client.
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.close()
        cycle.disconnected = True  # type: ignore[union-attr]
        return
    # Another server: promise a body that never comes, so the client still gets no answer.
    headers = [*start.get("headers", []), (b"content-length", b"1000000")]
    await send({**start, "headers": headers})
    raise ConnectionAbortedError("sandbox dropped the answer")


def create_app(config: SandboxConfig | None = None) -> SandboxApp:
    """The sandbox as an ASGI app; its ``sandbox`` attribute is its :class:`Sandbox`."""
    sandbox = Sandbox(config or SandboxConfig())
    routes = Starlette(
        routes=[
            Route("/api/1.0/{namespace}", sandbox.api, methods=["POST"]),
            Route("/api/1.0/{namespace}", sandbox.not_allowed, methods=["GET", "PUT", "DELETE"]),
            Route("/_sandbox/tasks", sandbox.tasks, methods=["GET"]),
            Route("/_sandbox/tasks/{task_id:int}", sandbox.delete_task, methods=["DELETE"]),
            Route("/_sandbox/tasks/{task_id:int}", sandbox.edit_task, methods=["POST"]),
            Route("/_sandbox/requests", sandbox.requests_route, methods=["GET"]),
            Route("/_sandbox/batches", sandbox.batches_route, methods=["GET"]),
            Route("/_sandbox/stats", sandbox.stats_route, methods=["GET"]),
            Route("/_sandbox/reset", sandbox.reset_route, methods=["POST"]),
        ]
    )
    # Outside Starlette's own error middleware, so that ``send`` is the server's own.
    return SandboxApp(routes, sandbox)
