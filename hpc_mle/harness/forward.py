"""Serve the validator's Unix socket at 127.0.0.1:PORT inside a sandbox with its own network.

MLE-bench agents expect `http://localhost:5000/validate`. A sandbox with its own network namespace
has its own loopback, so each attempt can listen on 5000 without colliding with others on the node.
Standard library only. Usage: python3 forward.py PORT SOCKET
"""

import asyncio
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


async def main(port: int, socket_path: str) -> None:
    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
