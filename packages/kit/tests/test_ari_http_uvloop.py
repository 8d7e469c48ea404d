"""The ARI REST client on uvloop, which every service runs on (its transports are not
asyncio.Transport instances, and it calls the protocol's callbacks from its own C code)."""

from __future__ import annotations

import asyncio

import uvloop
from ringwise_kit.ari.http import HttpError, KeepAliveHttp


async def pipelined_exchange() -> list[tuple[int, bytes] | HttpError]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = KeepAliveHttp(f"http://127.0.0.1:{port}", {})
    try:
        return await http.pipeline([("GET", "/a", None, None), ("GET", "/b", None, None)])
    finally:
        await http.close()
        server.close()


def test_pipelined_requests_work_on_uvloop() -> None:
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(pipelined_exchange()) == [(200, b"{}"), (404, b"")]
    finally:
        loop.close()
