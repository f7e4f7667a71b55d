"""The client's configuration, errors and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from importer.client import (
    REGIONS,
    ApiError,
    Credentials,
    TransportError,
    encode_body,
    parse_retry_after,
)
from importer.errors import UsageError

from .conftest import raises


def test_regions_are_the_three_regional_hosts():
    assert REGIONS == {
        "au": "https://api.ap-southeast-2.ivvy.com",
        "us": "https://api.us-west-2.ivvy.com",
        "uk": "https://api.eu-west-2.ivvy.com",
    }


def test_credentials_from_env_by_region():
    creds = Credentials.from_env({"IVVY_API_KEY": "k", "IVVY_API_SECRET": "s", "IVVY_REGION": "UK"})
    assert creds.base_url == REGIONS["uk"]


def test_base_url_wins_over_region_and_loses_its_trailing_slash():
    env = {
        "IVVY_API_KEY": "k",
        "IVVY_API_SECRET": "s",
        "IVVY_REGION": "us",
        "IVVY_BASE_URL": "http://127.0.0.1:8800/",
    }
    assert Credentials.from_env(env).base_url == "http://127.0.0.1:8800"


def test_missing_secret_is_a_usage_error_naming_the_variable():
    with pytest.raises(UsageError, match="IVVY_API_SECRET"):
        Credentials.from_env({"IVVY_API_KEY": "k"})


def test_unknown_region_is_a_usage_error():
    with pytest.raises(UsageError, match="au, us, uk"):
        Credentials.from_env({"IVVY_API_KEY": "k", "IVVY_API_SECRET": "s", "IVVY_REGION": "eu"})


def test_secret_is_not_in_repr():
    creds = Credentials(key="k", secret="top-secret-value")
    assert "top-secret-value" not in repr(creds)
    assert "top-secret-value" not in creds.target


def test_body_is_compact_utf8_without_surrounding_whitespace():
    body = encode_body({"name": "Café", "id": 1})
    assert body == '{"name":"Café","id":1}'.encode()
    assert encode_body(None) == b""


def test_retry_after_in_seconds():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0


def test_retry_after_as_http_date():
    now = datetime(2026, 11, 26, 5, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(7.0)


def test_retry_after_in_the_past_is_zero_and_garbage_is_none():
    now = datetime(2026, 11, 26, 5, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0


def test_error_body_becomes_a_typed_exception(sandbox):
    exc = raises(sandbox, "crm", "addOrUpdateTask", {"name": "x", "endDatetime": "x"})
    assert isinstance(exc, ApiError)
    assert (exc.http_status, exc.error_code, exc.specific_code) == (400, 400, 23016)
    assert exc.message == "'endDatetime' does not validate"
    assert exc.additional_messages == ("Value must be a timestamp YYYY-MM-DD HH:MM:SS (UTC)",)
    assert exc.code == 23016
    assert "23016" in str(exc) and "crm.addOrUpdateTask" in str(exc)


def test_closed_port_is_a_transport_error_that_sent_nothing():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = type("T", (), {"credentials": Credentials("k", "s", f"http://127.0.0.1:{port}")})()
    exc = raises(target, "test", "ping")
    assert isinstance(exc, TransportError) and exc.maybe_processed is False


def test_a_server_that_ignores_start_is_not_walked_forever():
    import asyncio

    import httpx

    from importer.client import IvvyClient

    def same_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": [{"id": 1}, {"id": 2}]})

    async def walk():
        creds = Credentials("k", "s", "http://127.0.0.1:9")
        client = IvvyClient(creds, transport=httpx.MockTransport(same_page))
        async with client:
            return [r async for r in client.iter_collection("crm", "getLeadList", per_page=2)]

    with pytest.raises(TransportError, match="same page twice"):
        asyncio.run(walk())


def test_reads_are_retried_through_failures_and_writes_are_not(make_sandbox):
    import asyncio

    from importer.client import IvvyClient, ServerError

    server = make_sandbox(fail_rate=0.3, random_seed=11)

    async def go():
        async with IvvyClient(server.credentials) as client:
            pings = [await client.ping() for _ in range(10)]
            writes = []
            for n in range(10):
                try:
                    await client.add_or_update_task(
                        {"name": f"T{n}", "endDatetime": "2026-12-01 09:00:00"}
                    )
                    writes.append("ok")
                except ServerError:
                    writes.append("500")
            return pings, writes

    pings, writes = asyncio.run(go())
    assert all("ack" in p for p in pings)  # every read got through
    assert "500" in writes  # a write that failed was not sent again by the client
    stats = server.stats()
    assert stats["by_action"]["crm.addOrUpdateTask"] == 10
    assert stats["by_action"]["test.ping"] > 10
