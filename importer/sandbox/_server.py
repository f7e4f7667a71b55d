"""Running the sandbox: in the foreground (``task-import sandbox``) or in a background thread on a
free loopback port (``--sandbox``, the tests)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import httpx
import uvicorn

from ..client import Credentials
from ._app import SandboxApp, SandboxConfig, create_app

#: The sandbox is plain HTTP on loopback: the inspection helpers need no certificates, and
#: loading the system's for each call (what httpx does by default) took 40 ms a call.
_NO_CERTIFICATES = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _uvicorn_config(app: SandboxApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        date_header=False,  # the sandbox sends its own clock's (it may be skewed)
    )


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8800) -> None:
    """Serve the sandbox in the foreground until interrupted."""
    uvicorn.Server(_uvicorn_config(create_app(config), host, port, "info")).run()


class SandboxServer:
    """The sandbox on ``host`` (loopback) at a free port, served from a background thread.

    ``with SandboxServer(SandboxConfig(...)) as sandbox:`` then ``sandbox.base_url``,
    ``sandbox.credentials`` and the inspection helpers; the server stops on leaving the block.
    """

    def __init__(
        self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SandboxConfig()
        self.app = create_app(self.config)
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def credentials(self) -> Credentials:
        return Credentials(key=self.config.key, secret=self.config.secret, base_url=self.base_url)

    def start(self) -> SandboxServer:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says TCP, and without it every answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.app, self._host, self.port, "error"))
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="ivvy-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Inspection over HTTP, as a test or a user would do it.
    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.base_url}{path}", timeout=10, verify=_NO_CERTIFICATES)
        response.raise_for_status()
        return response.json()

    def tasks(self) -> list[dict[str, Any]]:
        return self.get("/_sandbox/tasks")

    def task(self, task_id: int) -> dict[str, Any]:
        """One task as the sandbox holds it (KeyError when it holds none of that id)."""
        for task in self.tasks():
            if int(task["id"]) == int(task_id):
                return task
        raise KeyError(task_id)

    def stats(self) -> dict[str, Any]:
        return self.get("/_sandbox/stats")

    def reset(self) -> None:
        answer = httpx.post(f"{self.base_url}/_sandbox/reset", timeout=10, verify=_NO_CERTIFICATES)
        answer.raise_for_status()
