"""Bad input never makes a 500: every operation, with each field of a valid body replaced by a
value of the wrong kind, and junk bodies and query parameters."""

from __future__ import annotations

import re
from typing import Any

import pytest
from directory_harness import BODIES, Harness, populate
from ringwise.api.v1 import api_pb2
from ringwise_directory.common.access import load_rules

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
WRONG: list[Any] = [
    None,
    "",
    " ",
    0,
    -1,
    10**12,
    1.5,
    True,
    [],
    [None],
    {},
    {"$gt": ""},
    "x" * 5000,
    "\u0000",
    "../../etc",
    "+",
    "é" * 3,
]
JUNK_BODIES: list[Any] = [None, [], "text", 7, {"unexpected": {"nested": [1, 2]}}, {"$where": "1"}]
QUERIES = [
    {"limit": "0"},
    {"limit": "abc"},
    {"limit": "201"},
    {"cursor": "!!"},
    {"sort": "-"},
    {"sort": "password_hash"},
    {"q": "(("},
    {"q": "x" * 500},
    {"since": "2026-13-45"},
    {"status": "$ne"},
    {"format": "exe"},
    {"vip": "maybe"},
    {"scope": "everything"},
]


def mutations(body: dict[str, Any]) -> list[Any]:
    out: list[Any] = list(JUNK_BODIES)
    for name in body:
        for wrong in WRONG:
            out.append({**body, name: wrong})
        out.append({k: v for k, v in body.items() if k != name})
    return out


async def test_no_bad_input_is_a_server_error(harness: Harness) -> None:
    tenant = await harness.new_tenant("fuzz")
    ids = await populate(harness, tenant, "fuzz")
    admin = harness.client(api_pb2.ROLE_TENANT_ADMIN, tenant, subject_id=ids["user_id"])
    operator = harness.operator
    sent = 0
    for op_id, rule in sorted(load_rules().items()):
        names = re.findall(r"{(\w+)}", rule.path)
        path = {name: ids[name] for name in names}
        caller = operator if not names else admin
        for body in mutations(BODIES.get(op_id, {})):
            reply = await caller.at(op_id, body, path)
            assert reply.status < 500, (op_id, body, reply.body)
            sent += 1
        for query in QUERIES:
            reply = await caller.at(op_id, None, path, query=query)
            assert reply.status < 500, (op_id, query, reply.body)
            sent += 1
        for name in names:  # odd path values
            for odd in ("", "x" * 300, "../x", "%2B", "+0", "null"):
                reply = await caller.at(op_id, BODIES.get(op_id), {**path, name: odd})
                assert reply.status < 500, (op_id, name, odd, reply.body)
                sent += 1
    assert sent > 1000
