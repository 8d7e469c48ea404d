"""The ARI REST client's query strings: urlencode's output, quoting only what needs it."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from ringwise_kit.ari.http import _query


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=4))
def test_the_query_string_is_exactly_what_urlencode_makes(params: dict[str, str]) -> None:
    assert _query(params) == urlencode(params)


def test_only_values_that_need_it_are_quoted() -> None:
    query = _query({"endpoint": "PJSIP/alice", "channelId": "c-1.2_x~", "media": "a b&c"})
    assert query == "endpoint=PJSIP%2Falice&channelId=c-1.2_x~&media=a+b%26c"
