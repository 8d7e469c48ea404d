"""Directory numbers: the fixture format, and resolve_number against a real Mongo-wire server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from directory_harness import Harness
from ringwise.directory.v1 import resolve_pb2
from ringwise_directory.numbers.fixture import FixtureError, load_fixture, read_fixture
from ringwise_directory.stores import Stores

Reply = resolve_pb2.ResolveNumberReply

FIXTURE: dict[str, Any] = {
    "tenants": [{"tenant_id": "acme", "name": "Acme"}],
    "users": [
        {
            "tenant_id": "acme",
            "user_id": "alice",
            "name": "Alice",
            "ring_timeout_s": 15,
            "devices": [
                {"device_id": "alice-desk", "label": "Desk", "dial_string": "PJSIP/phones/sip:a@h"}
            ],
        },
        {"tenant_id": "acme", "user_id": "gone", "name": "Gone", "status": "deleted"},
    ],
    "numbers": [
        {"number": "+15550100", "tenant_id": "acme", "user_id": "alice"},
        {"number": "+15550111", "tenant_id": "acme", "user_id": "gone"},
    ],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"users": {}}, "users must be a list of objects"),
        ({"numbers": [{"number": "+1", "tenant_id": "acme"}]}, "lacks user_id"),
        ({"tenants": [{"name": "no id"}]}, "lacks tenant_id"),
    ],
)
def test_a_bad_fixture_is_refused_with_a_clear_message(
    tmp_path: Path, data: object, message: str
) -> None:
    with pytest.raises(FixtureError, match=message):
        read_fixture(write(tmp_path, data))


def test_an_unreadable_fixture_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FixtureError, match="cannot read"):
        read_fixture(tmp_path / "bad.json")
    with pytest.raises(FixtureError, match="cannot read"):
        read_fixture(tmp_path / "missing.json")


@pytest_asyncio.fixture(loop_scope="session")
async def store(harness: Harness) -> AsyncIterator[Stores]:
    yield harness.service.stores


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_numbers_resolve_to_their_user_and_devices(store: Stores, tmp_path: Path) -> None:
    changed = await load_fixture(store, write(tmp_path, FIXTURE))
    assert sorted(number for _, number, _ in changed) == ["+15550100", "+15550111"]

    reply = await store.resolver.number("+15550100")
    assert reply.status == Reply.STATUS_FOUND
    assert (reply.tenant_id, reply.user_id, reply.user_name) == ("acme", "alice", "Alice")
    assert reply.ring_timeout_s == 15
    assert [(d.device_id, d.label, d.dial_string) for d in reply.devices] == [
        ("alice-desk", "Desk", "PJSIP/phones/sip:a@h")
    ]
    assert reply.version > 0

    assert (await store.resolver.number("+19999999")).status == Reply.STATUS_NOT_FOUND
    # A number whose user is no longer active reaches nobody.
    assert (await store.resolver.number("+15550111")).status == Reply.STATUS_NOT_FOUND


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_reloading_reports_only_numbers_whose_routing_changed(
    store: Stores, tmp_path: Path
) -> None:
    await load_fixture(store, write(tmp_path, FIXTURE))
    assert await load_fixture(store, write(tmp_path, FIXTURE)) == []
    moved = json.loads(json.dumps(FIXTURE))
    moved["numbers"][1]["user_id"] = "alice"
    changed = await load_fixture(store, write(tmp_path, moved))
    assert [number for _, number, _ in changed] == ["+15550111"]
    assert (await store.resolver.number("+15550111")).user_id == "alice"
