"""The ARI REST client's wire details: query strings (urlencode's output, quoting only what
needs it) and how a response is framed from its bytes."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from ringwise_kit.ari.http import _parse_response, _query


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=4))
def test_the_query_string_is_exactly_what_urlencode_makes(params: dict[str, str]) -> None:
    assert _query(params) == urlencode(params)


def test_only_values_that_need_it_are_quoted() -> None:
    query = _query({"endpoint": "PJSIP/alice", "channelId": "c-1.2_x~", "media": "a b&c"})
    assert query == "endpoint=PJSIP%2Falice&channelId=c-1.2_x~&media=a+b%26c"


def test_a_response_is_framed_by_its_headers_whatever_their_case_and_spacing() -> None:
    raw = bytearray(
        b"HTTP/1.1 201 Created\r\nServer: Asterisk\r\ncontent-LENGTH:2\r\n"
        b"CONNECTION:  Close \r\n\r\n{}HTTP/1.1 200"
    )
    assert _parse_response(raw) == (201, b"{}", False, len(raw) - len(b"HTTP/1.1 200"))


def test_an_incomplete_response_waits_for_more_bytes() -> None:
    assert _parse_response(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")) is None
    assert _parse_response(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}")) is None
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n"
    assert _parse_response(bytearray(chunked)) is None
    assert _parse_response(bytearray(chunked + b"0\r\n\r\n")) == (
        200,
        b"{}",
        True,
        len(chunked) + 5,
    )


def test_http_1_0_closes_unless_it_says_keep_alive() -> None:
    assert _parse_response(bytearray(b"HTTP/1.0 204 No Content\r\n\r\n")) == (204, b"", False, 27)
