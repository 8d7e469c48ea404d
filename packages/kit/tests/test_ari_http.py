"""The lean keep-alive HTTP client ARI's REST calls go through, against a real HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from ringwise_kit.ari.http import HttpError, KeepAliveHttp

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[tuple[TestServer, list[str]]]:
    peers: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        peers.append(str(request.transport.get_extra_info("peername") if request.transport else ""))
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "body": json.loads(body) if body else None,
                "auth": request.headers.get("Authorization"),
            }
        )

    async def missing(_request: web.Request) -> web.Response:
        return web.json_response({"message": "Channel not found"}, status=404)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"part": ')
        await response.write(b"1}")
        await response.write_eof()
        return response

    async def closing(_request: web.Request) -> web.Response:
        return web.Response(text="{}", headers={"Connection": "close"})

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="{}")

    async def empty(_request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/ari/echo/{rest:.*}", echo)
    app.router.add_get("/ari/missing", missing)
    app.router.add_get("/ari/chunked", chunked)
    app.router.add_get("/ari/closing", closing)
    app.router.add_get("/ari/slow", slow)
    app.router.add_delete("/ari/empty", empty)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server, peers
    await test_server.close()


def client(server: TestServer, timeout_s: float = 5.0, max_idle_s: float = 10.0) -> KeepAliveHttp:
    return KeepAliveHttp(
        str(server.make_url("")).rstrip("/"),
        {"Authorization": "Basic eDp5"},
        timeout_s=timeout_s,
        max_idle_s=max_idle_s,
    )


async def test_requests_carry_method_path_query_body_and_auth(
    server: tuple[TestServer, list[str]],
) -> None:
    http = client(server[0])
    status, raw = await http.request(
        "POST", "/ari/echo/channels/c1/play/p1", {"media": "sound:a,sound:b"}, b'{"x": 1}'
    )
    await http.close()
    assert status == 200
    assert json.loads(raw) == {
        "method": "POST",
        "path": "/ari/echo/channels/c1/play/p1",
        "query": {"media": "sound:a,sound:b"},
        "body": {"x": 1},
        "auth": "Basic eDp5",
    }


async def test_one_connection_serves_many_requests(server: tuple[TestServer, list[str]]) -> None:
    test_server, peers = server
    peers.clear()
    http = client(test_server)
    for _ in range(5):
        assert (await http.request("GET", "/ari/echo/x"))[0] == 200
    await http.close()
    assert len(peers) == 5
    assert len(set(peers)) == 1


async def test_an_idle_connection_is_not_reused_after_max_idle(
    server: tuple[TestServer, list[str]],
) -> None:
    test_server, peers = server
    peers.clear()
    http = client(test_server, max_idle_s=0.05)
    await http.request("GET", "/ari/echo/x")
    await asyncio.sleep(0.1)
    await http.request("GET", "/ari/echo/x")
    await http.close()
    assert len(set(peers)) == 2


async def test_errors_chunked_bodies_and_closing_servers(
    server: tuple[TestServer, list[str]],
) -> None:
    http = client(server[0])
    status, raw = await http.request("GET", "/ari/missing")
    assert status == 404
    assert json.loads(raw)["message"] == "Channel not found"
    assert await http.request("GET", "/ari/chunked") == (200, b'{"part": 1}')
    assert await http.request("GET", "/ari/closing") == (200, b"{}")
    assert await http.request("DELETE", "/ari/empty") == (204, b"")
    await http.close()


async def test_a_slow_server_times_out_cleanly(server: tuple[TestServer, list[str]]) -> None:
    http = client(server[0], timeout_s=0.2)
    with pytest.raises(HttpError, match="TimeoutError"):
        await http.request("GET", "/ari/slow")
    # The timed-out connection was dropped; the next request works on a fresh one.
    assert (await http.request("GET", "/ari/echo/x"))[0] == 200
    await http.close()


async def test_nothing_listening_is_an_http_error() -> None:
    http = KeepAliveHttp("http://127.0.0.1:1", {})
    with pytest.raises(HttpError):
        await http.request("GET", "/ari/x")


async def test_only_plain_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        KeepAliveHttp("https://example.invalid", {})


async def test_pipelined_requests_share_one_write_and_keep_their_order(
    server: tuple[TestServer, list[str]],
) -> None:
    test_server, peers = server
    peers.clear()
    http = client(test_server)
    results = await http.pipeline(
        [
            ("POST", "/ari/echo/first", None, None),
            ("GET", "/ari/missing", None, None),
            ("DELETE", "/ari/echo/third", {"reason_code": "16"}, None),
        ]
    )
    await http.close()
    first, missing, third = results
    assert not isinstance(first, HttpError) and json.loads(first[1])["path"] == "/ari/echo/first"
    assert not isinstance(missing, HttpError) and missing[0] == 404
    assert not isinstance(third, HttpError)
    assert json.loads(third[1])["query"] == {"reason_code": "16"}
    assert len(set(peers)) == 1


async def test_responses_after_a_closing_one_are_errors(
    server: tuple[TestServer, list[str]],
) -> None:
    http = client(server[0])
    closing, after = await http.pipeline(
        [("GET", "/ari/closing", None, None), ("GET", "/ari/echo/x", None, None)]
    )
    await http.close()
    assert closing == (200, b"{}")
    assert isinstance(after, HttpError)


async def test_a_burst_waits_for_connections_instead_of_opening_more(
    server: tuple[TestServer, list[str]],
) -> None:
    test_server, peers = server
    http = KeepAliveHttp(str(test_server.make_url("/ari")), {}, max_connections=3)
    peers.clear()
    try:
        results = await asyncio.gather(*(http.request("GET", f"/echo/{n}") for n in range(60)))
        assert [status for status, _ in results] == [200] * 60
        # 60 concurrent requests, never more than three connections (and all kept for reuse).
        assert len(set(peers)) <= 3
        again = await http.request("GET", "/echo/after")
        assert again[0] == 200
        assert len(set(peers)) <= 3
    finally:
        await http.close()


async def dribbling_server(responses: bytes) -> asyncio.Server:
    """A raw server that answers any request with `responses`, one byte per write."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for index in range(len(responses)):
            writer.write(responses[index : index + 1])
            await writer.drain()
            await asyncio.sleep(0)
        await reader.read()  # until the client closes
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_responses_arriving_a_byte_at_a_time_are_put_together() -> None:
    responses = (
        b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"a": "b"}\n'
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"m"\r\n6;ext=1\r\n: "x"}\r\n0\r\n\r\n'
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
    )
    server = await dribbling_server(responses)
    port = server.sockets[0].getsockname()[1]
    http = KeepAliveHttp(f"http://127.0.0.1:{port}", {})
    try:
        results = await http.pipeline(
            [("GET", "/a", None, None), ("GET", "/b", None, None), ("DELETE", "/c", None, None)]
        )
        assert results == [(200, b'{"a": "b"}\n'), (404, b'{"m": "x"}'), (204, b"")]
    finally:
        await http.close()
        server.close()


async def test_a_response_that_is_not_http_is_an_error_and_the_connection_is_dropped() -> None:
    server = await dribbling_server(b"SSH-2.0-OpenSSH\r\n\r\n")
    port = server.sockets[0].getsockname()[1]
    http = KeepAliveHttp(f"http://127.0.0.1:{port}", {}, timeout_s=2.0)
    try:
        [result] = await http.pipeline([("GET", "/a", None, None)])
        assert isinstance(result, HttpError) and "not an HTTP response" in str(result)
    finally:
        await http.close()
        server.close()
