"""The signing formulas against the API reference's test vectors, and client ⇄ sandbox agreement."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from importer import signing
from importer.client import Credentials, encode_body, signed_headers
from importer.sandbox._auth import Received, verify

VECTOR_BODY = b'{"example":"body"}'
VECTOR_STRING = (
    "posta09f600c77a6dbd947db24c61e8935caapplication/json/api/1.0/test?action=ping1.0"
    "ivvydate=2012-04-03 22:23:24"
)


def test_md5_of_the_example_body():
    assert len(VECTOR_BODY) == 18
    assert signing.content_md5(VECTOR_BODY) == "a09f600c77a6dbd947db24c61e8935ca"


def test_md5_of_the_empty_body():
    assert signing.content_md5(b"") == "d41d8cd98f00b204e9800998ecf8427e"


def test_string_to_sign_of_the_reference_example():
    to_sign = signing.string_to_sign(
        method="POST",
        content_md5=signing.content_md5(VECTOR_BODY),
        content_type="application/json",
        date="",
        request_uri="/api/1.0/test?action=ping",
        ivvy_headers=signing.ivvy_headers_part([("IVVY-Date", "2012-04-03 22:23:24")]),
    )
    assert to_sign == VECTOR_STRING


def test_hmac_sha1_of_the_reference_example():
    assert (
        signing.signature("my secret key", "string to sign")
        == "a993876ea1218921a1c8551923473da7b310dfae"
    )


def test_signature_of_the_example_request():
    assert (
        signing.signature("my secret key", VECTOR_STRING)
        == "74af7ec6fec55dc88543e05096c69cebaf391eb9"
    )


def test_ivvy_headers_are_stripped_sorted_and_joined():
    part = signing.ivvy_headers_part(
        [("IVVY_Zone", "z"), ("Content-Type", "x"), ("IVVY-Date", "2012-04-03 22:23:24")]
    )
    assert part == "IVVYDate=2012-04-03 22:23:24&IVVYZone=z"


def test_client_headers_carry_the_reference_signature_for_the_same_parts():
    creds = Credentials(key="k", secret="my secret key", base_url="http://127.0.0.1:1")
    now = datetime(2012, 4, 3, 22, 23, 24, tzinfo=UTC)
    headers = signed_headers(creds, "/api/1.0/test?action=ping", VECTOR_BODY, now)
    assert headers["Content-MD5"] == "a09f600c77a6dbd947db24c61e8935ca"
    assert headers["IVVY-Date"] == "2012-04-03 22:23:24"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    expected = signing.signature(
        "my secret key",
        VECTOR_STRING.replace("application/json", "application/json; charset=utf-8"),
    )
    assert headers["X-Api-Authorization"] == f"IWS k:{expected}"


def test_parse_authorization():
    assert signing.parse_authorization("IWS key:abc") == ("key", "abc")
    assert signing.parse_authorization("Bearer x") is None
    assert signing.parse_authorization("IWS nocolon") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    params=st.one_of(st.none(), st.dictionaries(st.text(), json_values, max_size=5)),
    secret=st.text(min_size=1, max_size=40),
    action=st.sampled_from(["ping", "addOrUpdateTask", "getTaskList"]),
)
def test_whatever_the_client_signs_the_sandbox_verifies(params, secret, action):
    creds = Credentials(key="key-1", secret=secret, base_url="http://127.0.0.1:1")
    body = encode_body(params)
    if params is not None:
        assert json.loads(body) == params
    uri = f"/api/1.0/crm?action={action}"
    now = datetime.now(UTC)
    headers = signed_headers(creds, uri, body, now)
    received = Received("POST", uri, list(headers.items()), body)
    assert verify(received, {"key-1": secret}, now) == "key-1"
