"""The page's guard, route by route over real loopback HTTP: a Host that is not the page's own
(DNS rebinding) is refused before any handler runs, every POST needs the form's token and the
page's own Origin, every answer carries the security headers (a 500 too), and no GET changes
anything (not the upload's folder, not iVvy)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.routing import Mount, Route

from importer.client import Credentials
from importer.serve import Page, ServeConfig, loopback_hosts
from importer.serve._guard import SECURITY_HEADERS

from .test_serve_http import checked, csrf_of, upload

SHEET = "name,endDatetime\nOne,2026-12-01 10:00\nTwo,31/02/2026\n"


def routes() -> list[tuple[str, str]]:
    """Every (method, path) the page answers, from the application itself ({id}: an upload)."""
    page = Page(ServeConfig(Credentials("k", "s"), Path(os.devnull).parent / "unused-uploads"))
    found = []
    for route in page.starlette.routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path + "/page.js"))
        elif isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


@pytest.fixture(autouse=True)
def _no_uploads_left(tmp_path, monkeypatch):
    # Page() above makes its uploads folder: keep it in the test's own folder.
    monkeypatch.chdir(tmp_path)


def an_upload(client: httpx.Client, address: str) -> str:
    """A checked upload's base address."""
    mapped = upload(client, address, SHEET)
    base = str(mapped.url).rsplit("/", 1)[0]
    assert "1 invalid" in checked(client, base).text
    return base


def test_a_foreign_host_is_refused_on_every_route_even_with_a_matching_origin(served):
    address = served()
    port = httpx.URL(address).port
    with httpx.Client(follow_redirects=True) as client:
        base = an_upload(client, address)
        ident = base.rsplit("/", 1)[1]
        token = csrf_of(client, address)
        everything = routes()
        assert len(everything) >= 18
        for method, path in everything:
            url = address.rstrip("/") + path.replace("{id}", ident)
            for host in (f"rebind.example:{port}", f"127.0.0.1:{port + 1}", "localhost"):
                answer = client.request(
                    method,
                    url,
                    headers={"Host": host, "Origin": f"http://{host}"},
                    data={"csrf": token} if method == "POST" else None,
                    follow_redirects=False,
                )
                assert answer.status_code == 403, (method, path, host, answer.status_code)
                assert "own address" in answer.text
        # Its own names are answered.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert client.get(address, headers={"Host": host}).status_code == 200
        assert ident in {u.rsplit("/", 1)[-1] for u in [base]}  # the upload is still there
        assert client.get(f"{base}/check").status_code == 200


def test_every_post_route_needs_the_form_token_and_the_page_s_own_origin(served, sandbox):
    address = served()
    with httpx.Client(follow_redirects=True) as client:
        base = an_upload(client, address)
        ident = base.rsplit("/", 1)[1]
        token = csrf_of(client, address)
        posts = [path for method, path in routes() if method == "POST"]
        assert len(posts) >= 9
        for path in posts:
            url = address.rstrip("/") + path.replace("{id}", ident)
            form = {"row": "3", "column": "endDatetime", "value": "x", "sheet": "", "all": "1"}
            no_token = client.post(url, data=form, follow_redirects=False)
            assert no_token.status_code == 403, (path, no_token.status_code)
            forged = client.post(url, data={**form, "csrf": "forged"}, follow_redirects=False)
            assert forged.status_code == 403, path
            foreign = client.post(
                url,
                data={**form, "csrf": token},
                headers={"Origin": "http://evil.example"},
                follow_redirects=False,
            )
            assert foreign.status_code == 403 and "another site" in foreign.text, path
            null = client.post(
                url, data={**form, "csrf": token}, headers={"Origin": "null"},
                follow_redirects=False,
            )  # fmt: skip
            assert null.status_code == 403, path
        # None of it was done: the upload is there, uncorrected, and nothing was sent.
        assert "1 invalid" in client.get(f"{base}/check").text
    assert sandbox.tasks() == []


def test_no_get_changes_anything(served, sandbox, tmp_path):
    address = served()
    uploads = Path(os.environ["XDG_DATA_HOME"]) / "ivvy-task-importer" / "uploads"

    def state() -> dict[str, tuple[str, int]]:
        """Each file of the uploads: its content, and when it was last written."""
        return {
            str(p.relative_to(uploads)): (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                p.stat().st_mtime_ns,
            )
            for p in sorted(uploads.rglob("*"))
            if p.is_file()
        }

    with httpx.Client(follow_redirects=True) as client:
        base = an_upload(client, address)
        ident = base.rsplit("/", 1)[1]
        choices = {"column:name": "name", "column:endDatetime": "endDatetime"}
        token = csrf_of(client, address)
        client.post(f"{base}/map", data={"csrf": token, "profile": "", "next": "check", **choices})
        before, sent = state(), len(sandbox.get("/_sandbox/requests"))
        gets = [path for method, path in routes() if method == "GET"]
        for _ in range(2):
            for path in gets:
                url = address.rstrip("/") + path.replace("{id}", ident)
                answer = client.get(url, follow_redirects=False)
                assert answer.status_code in (200, 303), (path, answer.status_code)
                for query in ("?errors=1", "?again=1&update_existing=1"):
                    client.get(url + query, follow_redirects=False)
        assert state() == before
        assert len(sandbox.get("/_sandbox/requests")) == sent  # iVvy was not called


class _Failing(Page):
    async def home(self, request):  # type: ignore[override]
        raise RuntimeError("a bug")


@contextmanager
def serving(page: Page) -> Iterator[str]:
    """``page`` served by uvicorn in a thread on a free loopback port; its address."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    page.config.hosts = loopback_hosts(port)
    server = uvicorn.Server(uvicorn.Config(page.app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def test_the_security_headers_are_on_every_answer_a_500_included(tmp_path, sandbox):
    page = _Failing(ServeConfig(sandbox.credentials, tmp_path / "uploads"))
    with serving(page) as address, httpx.Client() as client:
        broken = httpx.get(address)  # its own connection: uvicorn closes it after a 500
        assert broken.status_code == 500
        assert "a bug" not in broken.text and "Traceback" not in broken.text
        answers = [
            broken,
            client.get(address + "static/page.js"),
            client.get(address + "u/nope/map"),  # 404
            client.post(address + "upload", data={}),  # 403: no token
            client.get(address, headers={"Host": "rebind.example"}),  # 403: foreign host
        ]
        for answer in answers:
            for name, value in SECURITY_HEADERS:
                assert answer.headers.get(name.decode()) == value.decode(), (
                    answer.status_code,
                    name,
                )


def test_no_page_shows_a_server_path_another_upload_or_the_key(served, sandbox, tmp_path):
    import time

    address = served()
    key = sandbox.credentials.key
    seen: list[str] = []

    def import_and_wait(client, base, **form):
        client.post(f"{base}/import", data={"csrf": csrf_of(client, address), **form})
        for _ in range(1200):  # up to a minute, for a loaded machine
            state = client.get(f"{base}/progress").json()
            if state.get("finished"):
                seen.append(str(state))
                return state
            time.sleep(0.05)
        raise AssertionError(state)

    with httpx.Client(follow_redirects=True) as client:
        first = an_upload(client, address)
        assert import_and_wait(client, first)["counts"] == {"created": 1, "invalid": 1}
        second = an_upload(client, address)  # the same file again
        seen.append(checked(client, second).text)
        refused = import_and_wait(client, second)  # not said "again": refused, and said why
        assert "already imported" in refused["error"]
        seen.append(client.get(f"{second}/import").text)
        seen.append(client.get(address).text)
    first_id = first.rsplit("/", 1)[1]
    for text in seen:
        assert first_id not in text
        assert key not in text and sandbox.config.secret not in text
        assert str(tmp_path) not in text and "/tmp/" not in text and "xdg-data" not in text
    assert "already imported" in seen[-2]


def test_the_printed_address_is_one_another_machine_can_open():
    import socket

    from importer.cli import page_address

    assert page_address("0.0.0.0", 8765) == f"http://{socket.getfqdn()}:8765/"
    assert "0.0.0.0" not in page_address("0.0.0.0", 8765)
    assert page_address("::", 80).startswith("http://") and "[::]" not in page_address("::", 80)
    assert page_address("192.168.1.5", 8765) == "http://192.168.1.5:8765/"
    assert page_address("::1", 8765) == "http://[::1]:8765/"
