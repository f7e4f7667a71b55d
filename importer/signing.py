"""iVvy request signing: the formulas of the API reference, as pure functions.

The client uses them to sign what it sends; the sandbox gathers the parts from what it *received*
and uses them to verify. Both are checked against the reference's test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

API_VERSION = "1.0"
#: What we send and sign. The reference's SDKs differ (.NET: with charset, JS/PHP: without);
#: a server verifies against whatever it received.
CONTENT_TYPE = "application/json; charset=utf-8"
IVVY_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def content_md5(body: bytes) -> str:
    """Lowercase hex MD5 of ``body``, as given.

    The reference hashes the body stripped of surrounding whitespace: senders send none, and a
    server accepts the hash of the body as received or stripped.
    """
    return hashlib.md5(body).hexdigest()


def ivvy_headers_part(headers: Iterable[tuple[str, str]]) -> str:
    """The ``ivvyHeaders`` part: every header whose name starts with ``IVVY``, its name stripped of
    ``-`` and ``_``, as ``name=value``, sorted by name and joined with ``&``."""
    items = sorted(
        (name.replace("-", "").replace("_", ""), value)
        for name, value in headers
        if name.upper().startswith("IVVY")
    )
    return "&".join(f"{name}={value}" for name, value in items)


def string_to_sign(
    *,
    method: str,
    content_md5: str,
    content_type: str,
    date: str,
    request_uri: str,
    api_version: str = API_VERSION,
    ivvy_headers: str,
) -> str:
    """The string the signature is computed over, already lowercased as the reference requires.

    ``date`` is the ``Date`` header's value, or empty when an ``IVVY-Date`` header is sent;
    ``request_uri`` is path plus query; ``ivvy_headers`` comes from :func:`ivvy_headers_part`.
    """
    return (
        f"{method}{content_md5}{content_type}{date}{request_uri}{api_version}{ivvy_headers}"
    ).lower()


def signature(secret: str, to_sign: str) -> str:
    """Lowercase hex HMAC-SHA1 of ``to_sign`` with the API secret as key, both UTF-8."""
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1).hexdigest()


def authorization(key: str, sig: str) -> str:
    """The ``X-Api-Authorization`` header value."""
    return f"IWS {key}:{sig}"


def parse_authorization(value: str) -> tuple[str, str] | None:
    """``(key, signature)`` from an ``X-Api-Authorization`` value, or None when malformed."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != "IWS" or ":" not in rest:
        return None
    key, _, sig = rest.strip().rpartition(":")
    if not key or not sig:
        return None
    return key, sig
