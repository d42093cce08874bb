"""Serve Unix sockets of the host at 127.0.0.1:PORT inside a sandbox with its own network.

MLE-bench agents expect the validator at `http://localhost:5000/validate`, and LLM clients want an
HTTP base URL (the metering proxy, at 127.0.0.1:4000). A sandbox with its own network namespace has
its own loopback, so each attempt can listen on these ports without colliding with others on the node.

Usage: python3 forward.py PORT SOCKET [PORT SOCKET ...]
The ports are bound first; then the forwarder detaches and the command returns, so whatever the
entry script starts next can connect at once. Standard library only (it runs on the image's Python).
"""

import asyncio
import os
import socket
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def serve(pairs):
    async def handler(socket_path):
        async def handle(client_reader, client_writer):
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

        return handle

    servers = [await asyncio.start_server(await handler(path), sock=sock) for sock, path in pairs]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def main(args):
    if not args or len(args) % 2:
        sys.exit("usage: forward.py PORT SOCKET [PORT SOCKET ...]")
    ports, paths = args[::2], args[1::2]
    pairs = [(bind(int(ports[i])), paths[i]) for i in range(len(ports))]
    if os.fork():  # the parent returns: the ports are listening already
        os._exit(0)
    os.setsid()
    asyncio.run(serve(pairs))


if __name__ == "__main__":
    main(sys.argv[1:])
