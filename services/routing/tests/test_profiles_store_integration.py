"""Routing profiles against real Mongo and NATS: versions and conflicts, the per-instance cache
dropped on profile_changed across instances (with the TTL as backstop), changes by phone
retried on a concurrent write, and the checks that refuse a bad profile before it is stored."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import resolve_pb2
from ringwise.routing.v1 import profiles_pb2
from ringwise_dev.infra import Infra
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiCall
from ringwise_routing.plans import changes
from ringwise_routing.plans.model import RingMode, RoutingProfile
from ringwise_routing.profiles import document
from ringwise_routing.profiles.document import DocumentInvalid
from ringwise_routing.profiles.http import routes
from ringwise_routing.profiles.service import DirectoryUnavailable, StoredProfiles
from ringwise_routing.profiles.store import ProfileStore, Stored, VersionConflict

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Reply = resolve_pb2.ResolveNumberReply
Mongo = AsyncMongoClient[dict[str, Any]]


def trunk_dial(number: str) -> str:
    return f"PJSIP/pstn/sip:{number}@192.0.2.1:5060"


def user(tenant: str, user_id: str = "alice", *devices: str) -> Reply:
    return Reply(
        status=Reply.STATUS_FOUND,
        tenant_id=tenant,
        user_id=user_id,
        smartnumber="+441632960001",
        devices=[
            resolve_pb2.Device(device_id=d, kind="sip", dial_string=f"PJSIP/{d}", label="Desk")
            for d in devices or ("desk-1",)
        ],
    )


def body(*, ring_mode: str = "sequential", busy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "terminals": [{"id": "desk", "location": "Desk", "device_id": "desk-1"}],
        "states": {
            "Available": {"terminals": ["desk"], "ring_mode": ring_mode},
            "Busy": busy or {},
            "Travelling": {"terminals": ["desk"]},
            "Holiday": {},
        },
    }


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(infra: Infra) -> AsyncIterator[Mongo]:
    client: Mongo = AsyncMongoClient(infra.endpoints.mongo_url, tz_aware=True)
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def store(mongo: Mongo) -> ProfileStore:
    profiles = ProfileStore(mongo, "ringwise_routing_test")
    await profiles.ensure_indexes()
    return profiles


@pytest_asyncio.fixture(loop_scope="session")
async def connect(infra: Infra) -> AsyncIterator[Callable[[], Any]]:
    clients: list[NatsClient] = []

    async def new() -> NatsClient:
        nc = await bus.connect(infra.endpoints.nats_url, "routing-profiles-test")
        clients.append(nc)
        return nc

    yield new
    for nc in clients:
        await nc.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def directory(connect: Callable[[], Any]) -> AsyncIterator[None]:
    """A stand-in directory: every user and the team "sales" exist, except users named
    nobody*."""
    nc = await connect()

    async def resolve_user(req: resolve_pb2.ResolveUserRequest) -> Reply:
        if req.user_id.startswith("nobody"):
            return Reply(status=Reply.STATUS_NOT_FOUND)
        return user(req.tenant_id, req.user_id)

    async def resolve_team(req: resolve_pb2.ResolveTeamRequest) -> resolve_pb2.ResolveTeamReply:
        if req.team_id != "sales":
            return resolve_pb2.ResolveTeamReply(status=Reply.STATUS_NOT_FOUND)
        return resolve_pb2.ResolveTeamReply(
            status=Reply.STATUS_FOUND, tenant_id=req.tenant_id, team_id="sales"
        )

    subs = [
        await bus.serve(
            nc,
            subjects.DIRECTORY_RESOLVE_USER,
            "directory",
            resolve_pb2.ResolveUserRequest,
            resolve_user,
        ),
        await bus.serve(
            nc,
            subjects.DIRECTORY_RESOLVE_TEAM,
            "directory",
            resolve_pb2.ResolveTeamRequest,
            resolve_team,
        ),
    ]
    await nc.flush()
    yield
    for sub in subs:
        await sub.unsubscribe()


async def instance(
    connect: Callable[[], Any], store: ProfileStore, **options: Any
) -> StoredProfiles:
    """One routing instance's profile source, on its own NATS connection."""
    profiles = StoredProfiles(await connect(), store, trunk_dial, **options)
    await profiles.start()
    return profiles


async def until(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_versions_guard_every_write(store: ProfileStore) -> None:
    tenant = new_tenant()
    doc = document.parse_profile(body())
    assert await store.get_profile(tenant, "alice") == Stored(None, 0)
    assert await store.put_profile(tenant, "alice", doc, 0, "api") == 1
    with pytest.raises(VersionConflict):
        await store.put_profile(tenant, "alice", doc, 0, "api")  # created meanwhile
    assert await store.put_profile(tenant, "alice", doc, 1, "api") == 2
    with pytest.raises(VersionConflict):
        await store.put_profile(tenant, "alice", doc, 1, "api")  # stale
    # Removing keeps counting: an ETag read before can never match what comes after.
    assert await store.put_profile(tenant, "alice", None, 2, "api") == 3
    removed = await store.get_profile(tenant, "alice")
    assert (removed.doc, removed.version) == (None, 3)
    assert await store.users_of_states(tenant, ["Available"]) == {}
    record = await store.profiles.find_one({"tenant_id": tenant, "user_id": "alice"})
    assert record is not None and record["_id"] == f"{tenant}:alice"
    # Another tenant's user of the same id is another record.
    assert await store.get_profile(new_tenant(), "alice") == Stored(None, 0)


async def test_the_unique_indexes_exist(store: ProfileStore) -> None:
    profile_indexes = await store.profiles.index_information()
    policy_indexes = await store.policies.index_information()
    assert any(
        i.get("unique") and i["key"] == [("tenant_id", 1), ("user_id", 1)]
        for i in profile_indexes.values()
    )
    assert any(i.get("unique") and i["key"] == [("tenant_id", 1)] for i in policy_indexes.values())


@pytest.mark.usefixtures("directory")
async def test_a_user_without_a_profile_gets_the_default_routing(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    profiles = await instance(connect, store)
    bob = user(new_tenant(), "bob", "desk-9", "soft-9")
    routing = await profiles.routing_for(bob)
    assert [t.terminal_id for t in routing.profile.terminals] == ["desk-9", "soft-9"]
    assert routing.profile.states["Available"].ring_mode is RingMode.SIMULTANEOUS
    await profiles.close()


@pytest.mark.usefixtures("directory")
async def test_a_change_on_one_instance_reaches_the_others_at_once(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    alice = user(tenant)
    # A TTL of an hour: only the change notice can make the second instance see the change.
    writer = await instance(connect, store, ttl_s=3600)
    reader = await instance(connect, store, ttl_s=3600)
    first = await writer.save(alice, document.parse_profile(body()), 0, origin="api")
    assert (await reader.routing_for(alice)).profile.states["Available"].ring_mode.value == (
        "sequential"
    )
    await writer.save(
        alice, document.parse_profile(body(ring_mode="simultaneous")), first.version, origin="api"
    )

    async def reader_sees_it() -> bool:
        routing = await reader.routing_for(alice)
        return routing.profile.states["Available"].ring_mode is RingMode.SIMULTANEOUS

    await until(reader_sees_it, timeout_s=2.0)
    await writer.close()
    await reader.close()


@pytest.mark.usefixtures("directory")
async def test_the_tenant_policy_change_reaches_the_others(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    alice = user(tenant)
    writer = await instance(connect, store, ttl_s=3600)
    reader = await instance(connect, store, ttl_s=3600)
    assert (await reader.routing_for(alice)).dialling.country_code == "+44"
    policy = document.parse_policy({"dialling": {"country_code": "+33"}})
    await writer.save_policy(tenant, policy, 0, origin="api")

    async def reader_sees_it() -> bool:
        return (await reader.routing_for(alice)).dialling.country_code == "+33"

    await until(reader_sees_it, timeout_s=2.0)
    await writer.close()
    await reader.close()


async def test_without_the_notice_the_ttl_is_the_backstop(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    alice = user(tenant)
    now = [1000.0]
    # Never started: it hears no change notices (as if they were lost).
    deaf = StoredProfiles(await connect(), store, trunk_dial, ttl_s=30, clock=lambda: now[0])
    assert not (await deaf.routing_for(alice)).profile.logged_out
    doc = document.parse_profile({**body(), "logged_out": True})
    await store.put_profile(tenant, "alice", doc, 0, "api")
    now[0] += 29
    assert not (await deaf.routing_for(alice)).profile.logged_out  # still the cached copy
    now[0] += 2
    assert (await deaf.routing_for(alice)).profile.logged_out


@pytest.mark.usefixtures("directory")
async def test_the_notice_is_published_with_whose_profile_changed(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    listener = await connect()
    heard: asyncio.Queue[profiles_pb2.ProfileChanged] = asyncio.Queue()

    async def on_notice(msg: Any) -> None:
        notice = profiles_pb2.ProfileChanged()
        notice.ParseFromString(msg.data)
        await heard.put(notice)

    await listener.subscribe(subjects.profile_changed(tenant), cb=on_notice)
    await listener.flush()
    writer = await instance(connect, store)
    await writer.save(user(tenant), document.parse_profile(body()), 0, origin="api")
    notice = await asyncio.wait_for(heard.get(), 2.0)
    assert (notice.tenant_id, notice.user_id, notice.version, notice.origin) == (
        tenant,
        "alice",
        1,
        "api",
    )
    await writer.close()


@pytest.mark.usefixtures("directory")
async def test_a_change_by_phone_is_retried_over_a_concurrent_write(
    connect: Callable[[], Any], store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    alice = user(tenant)
    profiles = await instance(connect, store)
    await profiles.save(alice, document.parse_profile(body()), 0, origin="api")
    put = store.put_profile
    raced: list[int] = []

    async def app_saves_first(
        tenant_id: str, user_id: str, doc: Any, expected_version: int, origin: str, actor: str
    ) -> int:
        if origin == "feature_code" and not raced:
            # The user's app logs them out between this change's read and its write.
            current = await store.get_profile(tenant_id, user_id)
            assert current.doc is not None
            raced.append(
                await put(
                    tenant_id, user_id, {**current.doc, "logged_out": True}, current.version, "app"
                )
            )
        return await put(tenant_id, user_id, doc, expected_version, origin, actor)

    monkeypatch.setattr(store, "put_profile", app_saves_first)
    tried: list[str] = []

    def go_busy(profile: RoutingProfile) -> RoutingProfile:
        tried.append("Busy")
        changed = changes.set_state(profile, "Busy")
        assert not isinstance(changed, list)
        return changed

    result = await profiles.change(alice, go_busy, origin="feature_code")
    assert tried == ["Busy", "Busy"] and raced == [2]
    assert result.manual is not None and result.manual.state == "Busy"
    stored = await store.get_profile(tenant, "alice")
    assert stored.doc is not None and stored.version == 3
    assert stored.doc["logged_out"] is True  # the app's write was not lost
    assert stored.doc["manual"]["state"] == "Busy"
    await profiles.close()


@pytest.mark.usefixtures("directory")
async def test_a_change_that_breaks_a_rule_stores_nothing(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    alice = user(tenant)
    profiles = await instance(connect, store)

    def delegate_to_self(profile: RoutingProfile) -> RoutingProfile:
        return replace(profile, delegates=("alice",))

    with pytest.raises(DocumentInvalid) as refused:
        await profiles.change(alice, delegate_to_self, origin="feature_code")
    assert refused.value.errors[0].field == "delegates"
    assert await store.get_profile(tenant, "alice") == Stored(None, 0)
    await profiles.close()


@pytest.mark.usefixtures("directory")
async def test_a_divert_loop_across_the_tenant_is_refused(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    profiles = await instance(connect, store)

    def delegating(target: str) -> dict[str, Any]:
        return document.parse_profile(
            body(busy={"fallback": {"kind": "delegate", "target": target}})
        )

    await profiles.save(user(tenant, "alice"), delegating("bob"), 0, origin="api")
    await profiles.save(user(tenant, "bob"), delegating("carol"), 0, origin="api")
    await profiles.save(user(tenant, "dave"), document.parse_profile(body()), 0, origin="api")
    # Only profiles that divert are read for the loop check.
    assert sorted(await store.diverting_profiles(tenant)) == ["alice", "bob"]
    with pytest.raises(DocumentInvalid) as refused:
        await profiles.save(user(tenant, "carol"), delegating("alice"), 0, origin="api")
    assert [e.message for e in refused.value.errors] == [
        "divert loop: carol -> alice -> bob -> carol"
    ]
    # The same chain in another tenant is no loop here.
    await profiles.save(user(new_tenant(), "carol"), delegating("alice"), 0, origin="api")
    await profiles.close()


@pytest.mark.usefixtures("directory")
async def test_a_custom_state_in_use_cannot_be_removed(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    profiles = await instance(connect, store)
    version = await profiles.save_policy(
        tenant, document.parse_policy({"custom_states": ["Meeting"]}), 0, origin="api"
    )
    meeting = body()
    meeting["states"]["Meeting"] = {"terminals": ["desk"]}
    await profiles.save(user(tenant), document.parse_profile(meeting), 0, origin="api")
    with pytest.raises(DocumentInvalid) as refused:
        await profiles.save_policy(tenant, document.parse_policy({}), version, origin="api")
    assert refused.value.errors[0].message == "Meeting still used by alice"
    await profiles.close()


class FailingStore(ProfileStore):
    """Mongo gone after the first reads (a stand-in for an outage)."""

    down = False

    async def get_profile(self, tenant_id: str, user_id: str) -> Stored:
        if self.down:
            raise ServerSelectionTimeoutError("mongo is down")
        return await super().get_profile(tenant_id, user_id)

    async def get_policy(self, tenant_id: str) -> Stored:
        if self.down:
            raise ServerSelectionTimeoutError("mongo is down")
        return await super().get_policy(tenant_id)


@pytest.mark.usefixtures("directory")
async def test_when_mongo_cannot_be_read_a_call_uses_the_last_copy(
    connect: Callable[[], Any], mongo: Mongo
) -> None:
    tenant = new_tenant()
    alice = user(tenant)
    failing = FailingStore(mongo, "ringwise_routing_test")
    now = [0.0]
    profiles = StoredProfiles(await connect(), failing, trunk_dial, ttl_s=1, clock=lambda: now[0])
    await profiles.save(
        alice, document.parse_profile({**body(), "logged_out": True}), 0, origin="api"
    )
    assert (await profiles.routing_for(alice)).profile.logged_out
    failing.down = True
    now[0] += 10  # long expired
    assert (await profiles.routing_for(alice)).profile.logged_out
    with pytest.raises(PyMongoError):
        await profiles.routing_for(user(tenant, "never-read"))


@pytest.mark.usefixtures("directory")
async def test_unknown_delegates_and_teams_are_refused(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    profiles = await instance(connect, store)
    doc = document.parse_profile(
        {
            **body(busy={"fallback": {"kind": "team", "target": "support"}}),
            "delegates": ["bob", "nobody1"],
            "call_flow": {"redirects": [{"kind": "user", "target": "nobody2"}]},
        }
    )
    with pytest.raises(DocumentInvalid) as refused:
        await profiles.save(user(tenant), doc, 0, origin="api")
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("delegates[1]", "no active user nobody1 in this tenant"),
        ("call_flow.redirects[0].target", "no active user nobody2 in this tenant"),
        ("states.Busy.fallback.target", "no team support in this tenant"),
    ]
    fixed = document.parse_profile(
        {**body(busy={"fallback": {"kind": "team", "target": "sales"}}), "delegates": ["bob"]}
    )
    assert (await profiles.save(user(tenant), fixed, 0, origin="api")).version == 1
    await profiles.close()


@pytest.mark.usefixtures("directory")
async def test_a_user_lookup_asks_the_directory(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    tenant = new_tenant()
    profiles = StoredProfiles(await connect(), store, trunk_dial, directory_timeout_s=0.3)
    found = await profiles.resolve_user(tenant, "alice")
    assert found is not None and found.devices[0].device_id == "desk-1"
    assert await profiles.resolve_user(tenant, "nobody") is None


async def test_a_reply_about_another_tenants_user_is_not_trusted(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    nc = await connect()
    profiles = StoredProfiles(nc, store, trunk_dial, directory_timeout_s=0.3)
    sub = await bus.serve(
        nc,
        subjects.DIRECTORY_RESOLVE_USER,
        "directory",
        resolve_pb2.ResolveUserRequest,
        lambda req: _other_tenant(req.user_id),
    )
    await nc.flush()
    try:
        assert await profiles.resolve_user("acme", "liar") is None
    finally:
        await sub.unsubscribe()
    await nc.flush()
    # With no directory at all: unavailable (the API answers 503), not "no such user".
    with pytest.raises(DirectoryUnavailable):
        await profiles.resolve_user("acme", "liar")


async def _other_tenant(user_id: str) -> Reply:
    return user("other", user_id)


@pytest.mark.usefixtures("directory")
async def test_the_api_answers_503_while_mongo_is_down(
    connect: Callable[[], Any], mongo: Mongo
) -> None:
    failing = FailingStore(mongo, "ringwise_routing_test")
    failing.down = True
    router = routes(StoredProfiles(await connect(), failing, trunk_dial))
    principal = api_pb2.Principal(
        subject_id="admin", tenant_id="acme", role=api_pb2.ROLE_TENANT_ADMIN
    )
    for operation in ("getRoutingProfile", "explainRouting", "getRoutingPolicy"):
        reply = await router.dispatch(
            ApiCall(
                operation,
                principal,
                path_params={"tenant_id": "acme", "user_id": "alice"},
            )
        )
        assert reply.status == 503, (operation, reply.body)
        assert json.loads(reply.body)["detail"] == "the routing store did not answer"


async def test_the_api_answers_503_while_the_directory_is_down(
    connect: Callable[[], Any], store: ProfileStore
) -> None:
    router = routes(StoredProfiles(await connect(), store, trunk_dial, directory_timeout_s=0.2))
    principal = api_pb2.Principal(
        subject_id="admin", tenant_id="acme", role=api_pb2.ROLE_TENANT_ADMIN
    )
    reply = await router.dispatch(
        ApiCall(
            "getRoutingProfile", principal, path_params={"tenant_id": "acme", "user_id": "alice"}
        )
    )
    assert reply.status == 503
    assert json.loads(reply.body)["detail"] == "the directory did not answer"
