"""Fixtures: sandboxes served on real loopback HTTP, and helpers to call them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.client import IvvyClient
from importer.sandbox import SandboxConfig, SandboxServer


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has its own user data folder (journals) and log folder, also for the
    commands it starts."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture(scope="session")
def _shared_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox(_shared_sandbox: SandboxServer) -> SandboxServer:
    """A default sandbox, back at its seed for each test."""
    _shared_sandbox.reset()
    return _shared_sandbox


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxServer]]:
    """Start a sandbox with the given :class:`SandboxConfig` knobs; stopped after the test."""
    started: list[SandboxServer] = []

    def make(**knobs: Any) -> SandboxServer:
        server = SandboxServer(SandboxConfig(**knobs)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def served(sandbox: SandboxServer, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start ``task-import serve`` (with these arguments) in a process of its own, sending to
    the sandbox; its address. Stopped after the test."""
    from .test_serve_browser import start_page

    processes = []

    def serve(*args: str) -> str:
        process, address = start_page(sandbox, tmp_path, *args)
        processes.append(process)
        return address

    yield serve
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def call(server: SandboxServer, namespace: str, action: str, params: Any = None, **kw: Any) -> Any:
    """One signed call through our client, with no retries; the answer, or the client's
    exception raised."""
    kw.setdefault("read_attempts", 1)

    async def go() -> Any:
        async with IvvyClient(server.credentials, **kw) as client:
            return await client.call(namespace, action, params)

    return asyncio.run(go())


def raises(server: SandboxServer, namespace: str, action: str, params: Any = None) -> Any:
    """The exception one call raises (the test fails if it succeeds)."""
    with pytest.raises(Exception) as info:
        call(server, namespace, action, params)
    return info.value


def sent(server: SandboxServer, action: str = "addOrUpdateTask") -> list[dict[str, Any]]:
    """The bodies of the ``action`` requests the sandbox received and answered 200, in order:
    what the importer sent, exactly (the tasks it holds show iVvy's rewriting of text)."""
    return [
        r["body"]
        for r in server.get(f"/_sandbox/requests?action={action}")
        if r["status"] == 200 and isinstance(r["body"], dict)
    ]


#: The repository's root: the folder that holds ``pyproject.toml`` above this file (found by
#: looking, not by counting folders, so a test moved deeper still finds it).
REPOSITORY = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())

#: The PostgreSQL server the journal's tests use (``.ci/run`` starts one there).
POSTGRES = os.environ.get("IVVY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:55432/postgres")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test PostgreSQL server's URL. Locally a missing server skips its tests, with the
    reason; under CI=true it fails them (``.ci/run`` installs and starts one)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES, connect_timeout=5) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        why = f"no PostgreSQL server at {POSTGRES} ({str(exc).strip()})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {why}: .ci/run starts one (.ci/postgres)")
        pytest.skip(f"{why}: start one with .ci/postgres, or set IVVY_TEST_POSTGRES")
    return POSTGRES


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_at(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    """Journals on each backend: ``journal_at(name)`` is a journal's ``--state`` (a file in
    the test's folder, or a schema of its own in the test server's database), and a command
    given no ``--state`` uses ``journal_at("default")`` (through ``IVVY_STATE``)."""
    if request.param == "sqlite":
        yield lambda name: str(tmp_path / f"{name}.sqlite")
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    schemas: dict[str, str] = {}

    def at(name: str) -> str:
        if name not in schemas:
            schemas[name] = f"t_{uuid.uuid4().hex[:12]}_{name}".lower().replace("-", "_")
            with psycopg.connect(server, autocommit=True) as db:
                db.execute(f'CREATE SCHEMA "{schemas[name]}"')
        return f"{server}?options=-csearch_path%3D{schemas[name]}"

    monkeypatch.setenv("IVVY_STATE", at("default"))
    yield at
    with psycopg.connect(server, autocommit=True) as db:
        for schema in schemas.values():
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')
