"""The page's guard, before any handler: the Host (on loopback only the page's own names), the
access token beyond loopback, the CSRF cookie and the Origin of every POST; and the security
headers on every answer, a 500 included."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from ._app import Page

CSRF_COOKIE = "ivvy_csrf"


TOKEN_COOKIE = "ivvy_token"


class NotFound(Exception):
    pass


class CsrfError(Exception):
    pass


def check_csrf(request: Request, sent: Any) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
        raise CsrfError


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


class Secured:
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


class Guard:
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
        except NotFound:
            await Response(_GONE, status_code=404,
                           media_type="text/html")(scope, receive, send_with_cookies)  # fmt: skip
        except CsrfError:
            await _refused(
                "Refused: the form's token is missing or stale. Reload the page and try again."
            )(scope, receive, send_with_cookies)


#: The page for an upload that is not here (removed, or gone with a restart): a way on.
_GONE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>No such upload</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<link rel="stylesheet" href="/static/page.css"></head><body><main>'
    "<h2>No such upload</h2><p>It may have been removed from this computer.</p>"
    '<p><a href="/" class="button primary">Upload a file</a></p></main></body></html>'
)


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
