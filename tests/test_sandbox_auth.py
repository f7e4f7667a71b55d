"""The sandbox checks signatures as the API page says, from what it received."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from importer.client import AuthError, Credentials
from importer.sandbox import DEFAULT_KEY, DEFAULT_SECRET

from .conftest import call
from .rawsign import raw_post

PING = "/api/1.0/test?action=ping"
BODY = b'{"example":"body"}'


def post(sandbox, **kw):
    kw.setdefault("key", DEFAULT_KEY)
    kw.setdefault("secret", DEFAULT_SECRET)
    body = kw.pop("body", BODY)
    uri = kw.pop("uri", PING)
    return raw_post(sandbox.base_url, uri, body, **kw)


def test_request_signed_with_plain_application_json_is_accepted(sandbox):
    answer = post(sandbox, content_type="application/json")
    assert answer.status_code == 200, answer.text
    assert "ack" in answer.json()


def test_request_signed_with_charset_content_type_is_accepted(sandbox):
    assert post(sandbox, content_type="application/json; charset=utf-8").status_code == 200


def test_our_client_is_accepted(sandbox):
    assert "ack" in call(sandbox, "test", "ping")


def test_x_api_version_is_not_required_but_allowed(sandbox):
    assert post(sandbox, api_version_header=False).status_code == 200
    assert post(sandbox, api_version_header=True).status_code == 200


def test_date_header_is_signed_when_ivvy_date_is_absent(sandbox):
    assert post(sandbox, use_date_header=True).status_code == 200


def test_md5_of_the_whitespace_stripped_body_is_accepted(sandbox):
    body = b'  {"example":"body"}\n'
    assert post(sandbox, body=body, md5_of=body.strip()).status_code == 200
    assert post(sandbox, body=body, md5_of=body).status_code == 200


def test_tampered_body_is_refused_401(sandbox):
    answer = post(sandbox, body=b'{"example":"evil"}', sign_body=BODY)
    assert answer.status_code == 401
    assert answer.json()["errorCode"] == 401


def test_tampered_body_with_matching_md5_is_refused_401(sandbox):
    # The attacker fixes Content-MD5 too: the signature no longer matches.
    good = post(sandbox)
    assert good.status_code == 200
    answer = post(sandbox, signature="0" * 40)
    assert answer.status_code == 401


def test_tampered_signature_is_refused_401(sandbox):
    answer = post(sandbox, signature="a993876ea1218921a1c8551923473da7b310dfae")
    assert answer.status_code == 401
    assert "Signature" in answer.json()["message"]


def test_wrong_secret_is_refused_401(sandbox):
    assert post(sandbox, secret="not the secret").status_code == 401


def test_unknown_key_is_refused_401(sandbox):
    answer = post(sandbox, key="nobody")
    assert answer.status_code == 401
    assert answer.json()["message"] == "Unknown API key"


@pytest.mark.parametrize("use_date_header", [False, True])
def test_stale_request_is_refused_23005(sandbox, use_date_header):
    answer = post(sandbox, skew=timedelta(minutes=-6), use_date_header=use_date_header)
    assert answer.status_code == 401
    assert answer.json() == {"errorCode": 401, "message": "Request is stale", "specificCode": 23005}


def test_request_from_a_clock_four_minutes_ahead_is_accepted(sandbox):
    assert post(sandbox, skew=timedelta(minutes=4)).status_code == 200


def test_missing_authorization_is_refused_401(sandbox):
    answer = httpx.post(sandbox.base_url + PING, content=b"", timeout=10)
    assert answer.status_code == 401


def test_get_is_not_allowed_405(sandbox):
    answer = httpx.get(sandbox.base_url + PING, timeout=10)
    assert answer.status_code == 405
    assert answer.json()["errorCode"] == 405


def test_client_raises_auth_error_without_the_secret(sandbox):
    secret = "s3cr3t-that-must-not-leak"
    wrong = Credentials(key=DEFAULT_KEY, secret=secret, base_url=sandbox.base_url)
    sandbox_like = type("S", (), {"credentials": wrong})()
    with pytest.raises(AuthError) as info:
        call(sandbox_like, "test", "ping")
    exc = info.value
    assert exc.error_code == 401
    for text in (str(exc), repr(exc), repr(wrong), repr(exc.__dict__)):
        assert secret not in text
