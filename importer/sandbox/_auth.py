"""Signature checks of the sandbox, from what the request *received* carries.

The parts of the string to sign are taken from the request as it arrived: its Content-Type (so
``application/json`` signed by the JavaScript and PHP SDKs verifies as well as the .NET SDK's
``application/json; charset=utf-8``), its Content-MD5, its ``Date`` header when no ``IVVY-Date``
is sent, its raw path and query, and every ``IVVY*`` header.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .. import signing
from . import _reference as ref
from ._refusal import Refusal


@dataclass(frozen=True, slots=True)
class Received:
    """What the signature covers, as the server received it."""

    method: str
    request_uri: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def unauthorized(message: str, specific_code: int | None = None) -> Refusal:
    return Refusal(401, message, specific_code)


def verify(received: Received, secrets: Mapping[str, str], now: datetime) -> str:
    """The API key of a correctly signed, fresh request; a 401 :class:`Refusal` otherwise."""
    parsed = signing.parse_authorization(received.header("X-Api-Authorization") or "")
    if parsed is None:
        raise unauthorized("Missing or malformed X-Api-Authorization header (IWS key:signature)")
    key, sig = parsed
    secret = secrets.get(key)
    if secret is None:
        raise unauthorized("Unknown API key")

    md5 = (received.header("Content-MD5") or "").strip()
    if md5.lower() not in {
        signing.content_md5(received.body),
        signing.content_md5(received.body.strip()),
    }:
        raise unauthorized("Content-MD5 does not match the body")

    ivvy_date = received.header("IVVY-Date")
    date_header = received.header("Date")
    if ivvy_date is not None:
        sent_at = _parse_ivvy_date(ivvy_date)
        date_part = ""
    elif date_header is not None:
        sent_at = _parse_http_date(date_header)
        date_part = date_header
    else:
        raise unauthorized("Missing IVVY-Date (or Date) header")
    if sent_at is None:
        raise unauthorized("Unreadable request date")
    if abs((now - sent_at).total_seconds()) > ref.STALE_SECONDS:
        raise unauthorized("Request is stale", ref.STALE)

    to_sign = signing.string_to_sign(
        method=received.method,
        content_md5=md5,
        content_type=received.header("Content-Type") or "",
        date=date_part,
        request_uri=received.request_uri,
        ivvy_headers=signing.ivvy_headers_part(received.headers),
    )
    if not hmac.compare_digest(signing.signature(secret, to_sign), sig.lower()):
        raise unauthorized("Signature does not match")
    return key


def _parse_ivvy_date(value: str) -> datetime | None:
    try:
        # The iVvy timestamp's " UTC" suffix is optional (the .NET SDK sends it).
        text = value.strip().removesuffix(" UTC").removesuffix("UTC").strip()
        return datetime.strptime(text, ref.TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
