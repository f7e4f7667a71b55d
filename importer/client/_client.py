"""The signed async iVvy client."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import stamina

from .. import signing
from ..fields import STALE
from ._config import Credentials
from ._exceptions import (
    ApiError,
    AuthError,
    NotSaved,
    RateLimited,
    ServerError,
    TransportError,
)

_AUTH_CODES = frozenset({401, 462, 463})
logger = logging.getLogger("importer.client")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date (RFC 9110).

    None when the header is absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


_READS = frozenset({"ping", "progress", "results"})


def is_read(action: str) -> bool:
    """Whether an action only reads (and so may be repeated freely)."""
    return action in _READS or action.startswith("get")


def transient(exc: Exception) -> bool | float:
    """Whether a failure may pass if the same request is sent again, and when: a 429's
    ``Retry-After`` in seconds when it gave one."""
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else True
    if isinstance(exc, ServerError | TransportError):
        return True
    return isinstance(exc, ApiError) and exc.specific_code == STALE


def encode_body(params: Mapping[str, Any] | None) -> bytes:
    """The JSON body for ``params``: compact, UTF-8, no surrounding whitespace; empty for None."""
    if params is None:
        return b""
    return json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signed_headers(
    credentials: Credentials, request_uri: str, body: bytes, now: datetime
) -> dict[str, str]:
    """Every header of a signed request to ``request_uri`` (path plus query) sent at ``now``."""
    md5 = signing.content_md5(body)
    ivvy_date = now.astimezone(UTC).strftime(signing.IVVY_DATE_FORMAT)
    to_sign = signing.string_to_sign(
        method="POST",
        content_md5=md5,
        content_type=signing.CONTENT_TYPE,
        date="",
        request_uri=request_uri,
        ivvy_headers=signing.ivvy_headers_part([("IVVY-Date", ivvy_date)]),
    )
    return {
        "Content-Type": signing.CONTENT_TYPE,
        "Content-MD5": md5,
        "IVVY-Date": ivvy_date,
        "X-Api-Version": signing.API_VERSION,
        "X-Api-Authorization": signing.authorization(
            credentials.key, signing.signature(credentials.secret, to_sign)
        ),
    }


class IvvyClient:
    """An async client for the iVvy API: signs every request afresh, turns errors into
    :class:`ApiError` subclasses and lost answers into :class:`TransportError`.

    Use as ``async with IvvyClient(credentials) as client: ...``. It does not retry: what to retry
    and how is the send stage's decision, since only it knows whether a write may be repeated.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: float = 30.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
        read_attempts: int = 8,
    ) -> None:
        self._credentials = credentials
        self._read_attempts = read_attempts
        self._clock = clock or (lambda: datetime.now(UTC))
        #: iVvy's clock minus ours, in seconds, as measured (:meth:`measure_clock`, or a stale
        #: answer's ``Date``); requests are signed with our time plus this.
        self.clock_offset = 0.0
        #: The offset last measured, however small (``clock_offset`` ignores one under
        #: ``CLOCK_TOLERANCE``): what telling iVvy's times from this tool's needs.
        self.measured_offset = 0.0
        #: What a person should know about the clocks, said once (None when they agree).
        self.clock_note: str | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._http = httpx.AsyncClient(
            base_url=credentials.base_url,
            timeout=timeout,
            # Every connection is kept between requests: with 32 in flight and fewer kept, most
            # requests would open a new connection (3 connects per row, measured: a latency-bound
            # run went 25% faster keeping them). ``max_connections`` sizes the pool to the rows in
            # flight.
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
            ),
            transport=transport,
            headers={"User-Agent": "ivvy-task-importer"},
            # Plain HTTP (a sandbox on loopback) needs no TLS: not loading the certificate
            # store saves a tenth of a second at start.
            verify=not credentials.base_url.startswith("http://"),
        )

    def __repr__(self) -> str:
        return f"IvvyClient({self._credentials.target})"

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    async def __aenter__(self) -> IvvyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        namespace: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        retry: bool = True,
    ) -> Any:
        """POST ``params`` to ``{namespace}?action={action}`` and return the decoded answer.

        Calls that only read (``ping``, ``get…``, a batch's ``progress`` and ``results``) are
        retried through transient failures (429 after its ``Retry-After``, 5xx, a lost answer, a
        stale date), each attempt signed afresh; writes are sent once, since only the send stage
        knows whether one may be repeated. ``retry=False`` sends a read once, too (for a caller
        that paces and retries it itself).

        Raises an :class:`ApiError` subclass when iVvy answers an error and
        :class:`TransportError` when there is no usable answer.
        """
        if not retry or not is_read(action):
            return await self._call_once(namespace, action, params)
        async for attempt in stamina.retry_context(
            on=transient, attempts=self._read_attempts, timeout=120, wait_initial=0.05, wait_max=5
        ):
            with attempt:
                return await self._call_once(namespace, action, params)
        raise AssertionError("unreachable: stamina re-raises the last failure")

    def server_now(self) -> datetime:
        """iVvy's time now, as far as it was measured."""
        return self._clock() + timedelta(seconds=self.clock_offset)

    def _learn_offset(self, server_time: datetime, sent: datetime, received: datetime) -> bool:
        """Take iVvy's clock from ``server_time`` (read between ``sent`` and ``received``, our
        clock) when it is far enough from ours to matter; whether the offset changed."""
        offset = (server_time - (sent + (received - sent) / 2)).total_seconds()
        self.measured_offset = offset
        if abs(offset - self.clock_offset) < CLOCK_TOLERANCE:
            return False
        self.clock_offset = offset if abs(offset) >= CLOCK_TOLERANCE else 0.0
        if self.clock_offset:
            self.clock_note = (
                f"this computer's clock is {abs(offset):.0f} s "
                f"{'behind' if offset > 0 else 'ahead of'} iVvy's: requests are signed with "
                "iVvy's time (set the clock right to silence this)"
            )
            logger.warning(self.clock_note)
        return True

    async def measure_clock(self) -> Any:
        """``ping``, and iVvy's clock measured from its answer (its timestamp, else its
        ``Date``); the answer."""
        sent = self._clock()
        answer = await self.ping()
        received = self._clock()
        stamp = answer.get("ack") or answer.get("timestamp") if isinstance(answer, dict) else None
        server_time = _ivvy_time(stamp)
        if server_time is not None:
            self._learn_offset(server_time, sent, received)
        return answer

    async def _call_once(
        self, namespace: str, action: str, params: Mapping[str, Any] | None
    ) -> Any:
        try:
            return await self._send_once(namespace, action, params)
        except _Stale as stale:
            # Our clock is far from iVvy's: take iVvy's from the refusal and sign again, once.
            if not stale.learned:
                raise stale.error from None
            try:
                return await self._send_once(namespace, action, params)
            except _Stale as again:
                raise again.error from None

    async def _send_once(
        self, namespace: str, action: str, params: Mapping[str, Any] | None
    ) -> Any:
        request_uri = f"/api/{signing.API_VERSION}/{namespace}?action={action}"
        body = encode_body(params)
        sent = self._clock()
        headers = signed_headers(
            self._credentials, request_uri, body, sent + timedelta(seconds=self.clock_offset)
        )
        name = f"{namespace}.{action}"
        url = self._urls.get(request_uri)
        if url is None:  # parsed once: httpx would parse and join it on every request
            # As httpx joins them: the base URL's path (it ends with "/"), then this one.
            base = self._http.base_url
            url = base.copy_with(raw_path=base.raw_path + request_uri.lstrip("/").encode())
            self._urls[request_uri] = url
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransportError(
                f"cannot connect to {self._credentials.base_url}: {exc}",
                maybe_processed=False,
                action=name,
            ) from None
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"no answer in time ({type(exc).__name__})", maybe_processed=True, action=name
            ) from None
        except httpx.TransportError as exc:
            raise TransportError(
                f"connection lost before an answer ({type(exc).__name__}: {exc})",
                maybe_processed=True,
                action=name,
            ) from None
        try:
            return _decode(response, name)
        except AuthError as exc:
            server_time = _http_time(response.headers.get("Date"))
            if exc.specific_code == STALE and server_time is not None:
                learned = self._learn_offset(server_time, sent, self._clock())
                raise _Stale(exc, learned) from None
            raise

    async def ping(self) -> Any:
        """``test?action=ping``: proves the key, the secret and the clock are accepted."""
        return await self.call("test", "ping")

    async def add_or_update_task(self, payload: Mapping[str, Any]) -> int:
        """``crm?action=addOrUpdateTask``; the id of the task created or updated."""
        answer = await self.call("crm", "addOrUpdateTask", payload)
        try:
            return int(answer["id"])
        except (KeyError, TypeError, ValueError):
            raise TransportError(
                f"unexpected answer without a task id: {str(answer)[:200]}",
                maybe_processed=True,
                action="crm.addOrUpdateTask",
            ) from None

    async def iter_collection(
        self,
        namespace: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        per_page: int = 100,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of a collection, page after page (``start`` is a record offset).

        Servers cap ``perPage`` silently, so the next ``start`` follows the records actually
        received, and the walk ends on an empty page or when ``totalResults`` is reached.
        A ``filter`` is a hint the server may ignore: callers check each record themselves.
        """
        start = 0
        previous: list[Any] | None = None
        while True:
            query: dict[str, Any] = dict(params or {})
            query["perPage"] = per_page
            query["start"] = start
            if filter:
                query["filter"] = dict(filter)
            page = await self.call(namespace, action, query)
            results = page.get("results") if isinstance(page, dict) else None
            if not results:
                return
            ids = [r.get("id") if isinstance(r, dict) else r for r in results]
            if ids == previous:
                # A server that ignores ``start`` would otherwise be walked forever.
                raise TransportError(
                    f"the server answered the same page twice (start={start}): it does not "
                    "page this list",
                    maybe_processed=False,
                    action=f"{namespace}.{action}",
                )
            previous = ids
            for record in results:
                yield record
            start += len(results)
            meta = page.get("meta") or {}
            total = meta.get("totalResults")
            if isinstance(total, int) and start >= total:
                return


#: Clocks closer than this are taken to agree (iVvy's timestamps have whole seconds).
CLOCK_TOLERANCE = 30.0


class _Stale(Exception):
    """A request refused as stale, and whether iVvy's clock was learned from the refusal."""

    def __init__(self, error: AuthError, learned: bool) -> None:
        self.error = error
        self.learned = learned


def _ivvy_time(text: Any) -> datetime | None:
    try:
        return datetime.strptime(str(text).strip()[:19], signing.IVVY_DATE_FORMAT).replace(
            tzinfo=UTC
        )
    except ValueError:
        return None


def _http_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _decode(response: httpx.Response, action: str) -> Any:
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    is_error_body = (
        isinstance(data, dict) and "errorCode" in data and data.get("success") is not True
    )
    if response.is_success and not is_error_body:
        if data is None and response.content:
            raise TransportError(
                f"answer is not JSON (HTTP {response.status_code})",
                maybe_processed=True,
                action=action,
            )
        if isinstance(data, dict) and data.get("success") is False:
            # A refusal, never a created task (the .NET SDK's result then carries a message).
            message = str(data.get("message") or "iVvy answered success: false")
            raise NotSaved(
                error_code=response.status_code,
                message=message,
                http_status=response.status_code,
                action=action,
            )
        return data
    raise _api_error(response, data, action)


def _api_error(response: httpx.Response, data: Any, action: str) -> ApiError:
    """The typed exception for an error answer, from its JSON body when it has one."""
    from_gateway = not (isinstance(data, dict) and "errorCode" in data)
    if not from_gateway:
        error_code = _as_int(data.get("errorCode")) or response.status_code
        specific = _as_int(data.get("specificCode"))
        message = str(data.get("message") or "")
        extra = data.get("additionalMessages") or []
        additional = [str(m) for m in (extra if isinstance(extra, list) else [extra])]
    else:
        error_code = response.status_code
        specific = None
        message = response.reason_phrase or f"HTTP {response.status_code}"
        additional = []
    kwargs: dict[str, Any] = {
        "error_code": error_code,
        "specific_code": specific,
        "message": message,
        "additional_messages": additional,
        "http_status": response.status_code,
        "action": action,
    }
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    codes = {response.status_code, error_code}
    if 429 in codes:
        return RateLimited(retry_after=retry_after, **kwargs)
    if from_gateway and response.status_code == 403:
        # A 403 without iVvy's error body comes from a gateway in front of it refusing the
        # request (overload, a firewall's rate rule): iVvy never saw it. Slow down and retry.
        return RateLimited(retry_after=retry_after, from_gateway=True, **kwargs)
    if codes & _AUTH_CODES:
        return AuthError(**kwargs)
    if max(codes) >= 500:
        # 503 says "overloaded": a reason to slow down, and (since it may come after the write)
        # a create it answers is looked up like any other server error.
        return ServerError(overloaded=response.status_code == 503, **kwargs)
    return ApiError(**kwargs)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
