"""The sandbox's HTTP app: the API under ``/api/1.0/{namespace}?action=...`` behind signature
checks and the test knobs, and the inspection routes under ``/_sandbox/``."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._auth import Received, verify
from ._batch import Batches
from ._refusal import Refusal
from ._seed import default_seed
from ._store import Store

#: Calls that only read: a dropped answer (``drop_rate``) is about writes done but not answered.
_READS = frozenset({"ping", "progress", "results"})

DEFAULT_KEY = "sandbox-key"
DEFAULT_SECRET = "sandbox-secret"


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves. ``rate_limit`` is requests per second per key (0: none);
    ``fail_rate`` answers 500 without doing anything; ``drop_rate`` does a write, then closes the
    connection without an answer (the ambiguous case); ``retry_after`` is how a 429 says when to
    come back: ``seconds``, an HTTP ``date`` or ``none``."""

    key: str = DEFAULT_KEY
    secret: str = field(default=DEFAULT_SECRET, repr=False)
    seed: Mapping[str, list[dict[str, Any]]] = field(default_factory=default_seed, repr=False)
    rate_limit: float = 0.0
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    ignore_filters: bool = False
    retry_after: Literal["seconds", "date", "none"] = "seconds"
    random_seed: int | None = None


class SlidingWindow:
    """At most ``rate`` requests in any one-second window, per key."""

    def __init__(self, rate: float) -> None:
        self.limit = max(1, math.floor(rate))
        self._seen: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """0 and the request counted when it may go now; else seconds until it may."""
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= 1.0:
            seen.popleft()
        if len(seen) < self.limit:
            seen.append(now)
            return 0.0
        return 1.0 - (now - seen[0])


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    failures_injected: int = 0
    drops: int = 0
    batch_jobs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "by_action": dict(self.by_action),
            "rate_limited": self.rate_limited,
            "failures_injected": self.failures_injected,
            "drops": self.drops,
            "batch_jobs": self.batch_jobs,
        }


class _DropFlag:
    """Set by the API route when the answer must be dropped; read by :class:`SandboxApp`."""

    drop = False


class Sandbox:
    """The state of one sandbox: store, batches, knobs and counters."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store(config.seed, ignore_filters=config.ignore_filters)
        self.batches = Batches(self._run_job, delay=config.latency_ms / 1000)
        self.stats = Stats()
        self.window = SlidingWindow(config.rate_limit) if config.rate_limit > 0 else None
        self.random = random.Random(config.random_seed)
        self.handlers = {**self.store.handlers(), **self.batches.handlers()}

    def reset(self) -> None:
        self.store.reset()
        self.batches.clear()
        self.stats = Stats()
        if self.window is not None:
            self.window = SlidingWindow(self.config.rate_limit)

    def call(self, namespace: str, action: str, params: Any) -> Any:
        """Run one API call; the answer body, or a :class:`Refusal`."""
        handler = self.handlers.get((namespace, action))
        if handler is None:
            raise Refusal(404, f"Unknown action {namespace}?action={action}")
        if not isinstance(params, dict):
            raise Refusal(400, "The request body must be a JSON object", 23016)
        return handler(params)

    async def _run_job(self, namespace: str, action: str, params: Any) -> dict[str, Any]:
        self.stats.batch_jobs += 1
        self.stats.by_action[f"{namespace}.{action}"] += 1
        if self.config.fail_rate and self.random.random() < self.config.fail_rate:
            self.stats.failures_injected += 1
            return Refusal(500, "Internal Server Error (injected by the sandbox)").body()
        try:
            return self.call(namespace, action, params)
        except Refusal as refusal:
            return refusal.body()

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

    async def api(self, request: Request) -> Response:
        self.stats.requests += 1
        namespace = request.path_params["namespace"]
        action = request.query_params.get("action", "")
        body = await request.body()
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        query = request.scope.get("query_string", b"").decode("latin-1")
        raw_path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        received = Received(
            method=request.method,
            request_uri=raw_path + (f"?{query}" if query else ""),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=body,
        )
        try:
            key = verify(received, {self.config.key: self.config.secret}, datetime.now(UTC))
        except Refusal as refusal:
            return _refused(refusal)
        if self.window is not None:
            wait = self.window.wait(key, time.monotonic())
            if wait > 0:
                return self.too_many(wait)
        self.stats.by_action[f"{namespace}.{action}"] += 1
        if self.config.fail_rate and self.random.random() < self.config.fail_rate:
            self.stats.failures_injected += 1
            return _refused(Refusal(500, "Internal Server Error (injected by the sandbox)"))
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError:
            return _refused(Refusal(400, "The request body is not valid JSON"))
        try:
            answer = self.call(namespace, action, params)
        except Refusal as refusal:
            return _refused(refusal)
        writes = not (action.startswith("get") or action in _READS)
        if writes and self.config.drop_rate and self.random.random() < self.config.drop_rate:
            self.stats.drops += 1
            request.scope["sandbox.drop"].drop = True
        return JSONResponse(answer)

    async def tasks(self, request: Request) -> Response:
        return JSONResponse([dict(t) for t in sorted(self.store.tasks.values(), key=_by_id)])

    async def delete_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        if self.store.tasks.pop(task_id, None) is None:
            return JSONResponse({"deleted": False}, status_code=404)
        return JSONResponse({"deleted": True, "id": task_id})

    async def stats_route(self, request: Request) -> Response:
        return JSONResponse(self.stats.as_dict())

    async def reset_route(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def not_allowed(self, request: Request) -> Response:
        return _refused(Refusal(405, "Method Not Allowed: every call is a POST"))


def _by_id(task: Mapping[str, Any]) -> int:
    return task["id"]


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
            if message["type"] == "http.response.start" and scope["path"].startswith("/api/"):
                self.sandbox.stats.by_status[str(message["status"])] += 1
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
            Route("/_sandbox/stats", sandbox.stats_route, methods=["GET"]),
            Route("/_sandbox/reset", sandbox.reset_route, methods=["POST"]),
        ]
    )
    # Outside Starlette's own error middleware, so that ``send`` is the server's own.
    return SandboxApp(routes, sandbox)
