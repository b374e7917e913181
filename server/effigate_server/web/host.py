"""Serving an ASGI application with uvicorn inside the running event loop (beside gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn


class AddressInUse(OSError):
    """The HTTP address cannot be listened on (the message says why)."""


def _listen(address: str) -> socket.socket:
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit():
        raise AddressInUse(f"--http-address {address!r} is not host:port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port_text)))
    except OSError as exc:
        sock.close()
        raise AddressInUse(
            f"cannot serve HTTP on {address}: {exc.strerror or exc}; pick another port with"
            f" --http-address {host}:PORT or EFFIGATE_HTTP_ADDRESS={host}:PORT"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the process's own (``serve``) decide
    when to stop, and stop both ports together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpHost:
    """An ASGI app listening on ``host:port`` (port 0: a free port) until :meth:`stop`."""

    def __init__(self, app: Any, address: str) -> None:
        self._socket = _listen(address)
        self.host = address.rpartition(":")[0].strip("[]") or "127.0.0.1"
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Start serving; returns once the socket accepts connections."""
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket])
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (a few seconds at most), close."""
        if self._task is None:
            return
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        self._socket.close()
