"""Serve an aiohttp application from a thread of its own, on sockets bound beforehand.

The proxy lives inside the attempt runner (whose main thread watches the agent) and the test server
inside test processes; both need an event loop that neither blocks nor is blocked by its host.
Binding the sockets first, in the caller's thread, means the address is known (and connections
queue) before serving starts, and a bind error surfaces where it can be reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from pathlib import Path

from aiohttp import web


def unix_socket(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(128)
    return sock


def tcp_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class BackgroundApp:
    """`app` served on `sockets` by a daemon thread; `stop()` closes everything (in-flight calls get 1 s)."""

    def __init__(self, app: web.Application, sockets: list[socket.socket], name: str) -> None:
        self.app, self.sockets, self.name = app, sockets, name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            try:
                loop.run_until_complete(runner.setup())
                for sock in self.sockets:
                    loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self.thread = threading.Thread(target=main, name=self.name, daemon=True)
        self.thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"{self.name} did not start within {timeout:g} s")
        if failure:
            raise RuntimeError(f"{self.name} could not start: {failure[0]}") from failure[0]

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread is not None and self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
        for sock in self.sockets:
            sock.close()
