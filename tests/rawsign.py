"""Requests signed by hand, straight from the API page, without our client: the sandbox is
checked against the reference, not against our own signing code."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import httpx


def raw_post(
    base_url: str,
    uri: str,
    body: bytes,
    *,
    key: str,
    secret: str,
    content_type: str = "application/json",
    skew: timedelta = timedelta(0),
    use_date_header: bool = False,
    api_version_header: bool = False,
    md5_of: bytes | None = None,
    sign_body: bytes | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST ``body`` to ``uri`` signed as the reference says. ``md5_of``/``sign_body`` hash another
    body than the one sent (tampering); ``signature`` replaces the computed one."""
    when = datetime.now(UTC) + skew
    md5 = hashlib.md5(md5_of if md5_of is not None else (sign_body or body).strip()).hexdigest()
    headers = {"Content-Type": content_type, "Content-MD5": md5}
    if use_date_header:
        date = when.strftime("%a, %d %b %Y %H:%M:%S UTC")
        headers["Date"] = date
        date_part, ivvy = date, ""
    else:
        stamp = when.strftime("%Y-%m-%d %H:%M:%S")
        headers["IVVY-Date"] = stamp
        date_part, ivvy = "", f"IVVYDate={stamp}"
    if api_version_header:
        headers["X-Api-Version"] = "1.0"
    to_sign = f"POST{md5}{content_type}{date_part}{uri}1.0{ivvy}".lower()
    sig = signature or hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).hexdigest()
    headers["X-Api-Authorization"] = f"IWS {key}:{sig}"
    return httpx.post(base_url + uri, content=body, headers=headers, timeout=10)
