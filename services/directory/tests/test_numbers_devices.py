"""Numbers' lifecycle and devices, with the events routing relies on (NumberChanged,
SipDeviceChanged) and the answers it reads (resolve_number, list_sip_devices)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from directory_harness import Harness
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import devices_pb2, resolve_pb2
from ringwise_dev.fixture import ALICE, PEOPLE, dial_string, write_fixture
from ringwise_dev.ports import PortPlan
from ringwise_directory.numbers.fixture import load_fixture
from ringwise_kit import bus, subjects

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ADMIN, USER = api_pb2.ROLE_TENANT_ADMIN, api_pb2.ROLE_USER
Found = resolve_pb2.ResolveNumberReply


class Events:
    def __init__(self) -> None:
        self.numbers: list[resolve_pb2.NumberChanged] = []
        self.devices: list[devices_pb2.SipDeviceChanged] = []

    async def settle(self) -> None:
        await asyncio.sleep(0.2)

    def numbers_seen(self) -> set[str]:
        return {e.number for e in self.numbers}


@pytest_asyncio.fixture(loop_scope="session")
async def events(nc: NatsClient) -> AsyncIterator[Events]:
    seen = Events()

    async def on_number(msg: Msg) -> None:
        seen.numbers.append(resolve_pb2.NumberChanged.FromString(msg.data))

    async def on_device(msg: Msg) -> None:
        seen.devices.append(devices_pb2.SipDeviceChanged.FromString(msg.data))

    subs = [
        await nc.subscribe(subjects.DIRECTORY_CHANGES, cb=on_number),
        await nc.subscribe(subjects.DIRECTORY_SIP_DEVICE_CHANGES, cb=on_device),
    ]
    await nc.flush()
    yield seen
    for sub in subs:
        await sub.unsubscribe()


async def resolve(harness: Harness, number: str) -> resolve_pb2.ResolveNumberReply:
    return await bus.request(
        harness.nc,
        subjects.DIRECTORY_RESOLVE_NUMBER,
        resolve_pb2.ResolveNumberRequest(number=number),
        resolve_pb2.ResolveNumberReply,
    )


async def list_sip(
    harness: Harness, after: str = "", limit: int = 0
) -> devices_pb2.ListSipDevicesReply:
    return await bus.request(
        harness.nc,
        subjects.DIRECTORY_LIST_SIP_DEVICES,
        devices_pb2.ListSipDevicesRequest(after=after, limit=limit),
        devices_pb2.ListSipDevicesReply,
    )


async def test_a_number_resolves_once_active_and_assigned_and_each_change_is_announced(
    harness: Harness, events: Events
) -> None:
    tenant = await harness.new_tenant("num-life")
    admin = harness.client(ADMIN, tenant)
    user = await harness.new_user(tenant, "nina@num.example")

    reserved = await admin.op(
        "reserveNumber",
        {"number": "+442070000001", "assignment": {"type": "user", "id": user["user_id"]}},
    )
    assert reserved.status == 201
    assert reserved.body["status"] == "reserved"
    assert reserved.body["expires_at"] == "2026-12-15T09:00:00Z"  # 20 days after the clock
    # Reserved numbers are not routed yet.
    assert (await resolve(harness, "+442070000001")).status == Found.STATUS_NOT_FOUND

    activated = await admin.op("activateNumber", number="+442070000001", if_match=reserved.etag)
    assert (activated.status, activated.body["status"]) == (200, "active")
    assert (await admin.op("activateNumber", number="442070000001")).status == 409

    phone = await admin.op(
        "createDevice", {"kind": "sip_phone", "label": "Desk"}, user_id=user["user_id"]
    )
    assert phone.status == 201
    answer = await resolve(harness, "+442070000001")
    assert (answer.status, answer.tenant_id, answer.user_id, answer.user_name) == (
        Found.STATUS_FOUND,
        tenant,
        user["user_id"],
        "nina",
    )
    assert [(d.device_id, d.kind, d.dial_string, d.label) for d in answer.devices] == [
        (phone.body["device_id"], "sip", f"PJSIP/{phone.body['sip_username']}", "Desk")
    ]
    assert answer.ring_timeout_s == 20
    await events.settle()
    versions = [e.version for e in events.numbers if e.number == "+442070000001"]
    assert len(versions) >= 3 and versions == sorted(versions)  # reserve, activate, device
    assert all(e.tenant_id == tenant for e in events.numbers if e.number == "+442070000001")

    # A user suspended, then the number moved: each change reaches routing.
    before = len(events.numbers)
    await admin.op("updateUser", {"status": "suspended"}, user_id=user["user_id"])
    assert (await resolve(harness, "+442070000001")).status == Found.STATUS_NOT_FOUND
    await admin.op("updateUser", {"status": "active"}, user_id=user["user_id"])
    moved = await admin.op("updateNumber", {"assignment": None}, number="+442070000001")
    assert moved.body["assignment"] is None
    assert (await resolve(harness, "+442070000001")).status == Found.STATUS_NOT_FOUND
    await events.settle()
    assert len(events.numbers) - before >= 3

    # A suspended tenant's numbers reach nobody, and routing is told so.
    await admin.op(
        "updateNumber",
        {"assignment": {"type": "user", "id": user["user_id"]}},
        number="+442070000001",
    )
    assert (await resolve(harness, "+442070000001")).status == Found.STATUS_FOUND
    before = len(events.numbers)
    await harness.operator.op("suspendTenant", tenant_id=tenant)
    assert (await resolve(harness, "+442070000001")).status == Found.STATUS_NOT_FOUND
    await harness.operator.op("activateTenant", tenant_id=tenant)
    assert (await resolve(harness, "+442070000001")).status == Found.STATUS_FOUND
    await events.settle()
    assert [e.number for e in events.numbers[before:]] == ["+442070000001", "+442070000001"]

    wrong = await admin.op(
        "updateNumber", {"assignment": {"type": "user", "id": "u_nobody"}}, number="+442070000001"
    )
    assert (wrong.status, wrong.body["errors"][0]["field"]) == (422, "assignment/id")


async def test_reservations_expire_after_20_days_and_deletions_at_the_months_end(
    harness: Harness, events: Events
) -> None:
    tenant = await harness.new_tenant("num-expiry")
    admin = harness.client(ADMIN, tenant)
    await admin.op("reserveNumber", {"number": "+442070000010"})
    await admin.op("reserveNumber", {"number": "+442070000011"})
    await admin.op("activateNumber", number="+442070000011")
    deleting = await admin.op("requestNumberDeletion", number="+442070000011")
    assert (deleting.body["status"], deleting.body["deletion_due_at"]) == (
        "awaiting_deletion",
        "2026-11-30T23:59:59Z",
    )
    caller = await harness.new_user(
        tenant,
        "cli@num.example",
        smartnumber="+442070000011",
        outbound_numbers=["+442070000011"],
        allowed_clis=["+442070000011", "+442070000010"],
    )
    numbers = harness.service.stores.numbers
    harness.clock.advance(days=4)  # Nov 29th: nothing is due
    assert await numbers.expire() == []
    harness.clock.advance(days=2)  # Dec 1st: the month of the deletion request ended
    assert await numbers.expire() == ["+442070000011"]
    harness.clock.advance(days=14)  # Dec 15th, 09:00: exactly 20 days after the reservation
    assert await numbers.expire() == ["+442070000010"]
    assert (await admin.op("listNumbers")).body["items"] == []
    await events.settle()
    assert {"+442070000010", "+442070000011"} <= events.numbers_seen()
    # Users no longer present released numbers, and can still be edited.
    cleaned = await admin.op("getUser", user_id=caller["user_id"])
    assert (
        cleaned.body["smartnumber"],
        cleaned.body["outbound_numbers"],
        cleaned.body["allowed_clis"],
    ) == (
        None,
        [],
        [],
    )
    assert (await admin.op("updateUser", {"name": "Cli"}, user_id=caller["user_id"])).status == 200
    history = await admin.op("listHistory", query={"action": "number.released"})
    assert sorted(e["detail"] for e in history.body["items"]) == [
        "deletion due",
        "reservation expired",
    ]

    # Released numbers can be taken again, by anyone; a held one cannot.
    other = harness.client(ADMIN, await harness.new_tenant("num-expiry-2"))
    assert (await other.op("reserveNumber", {"number": "+442070000010"})).status == 201
    assert (await admin.op("reserveNumber", {"number": "+442070000010"})).status == 409
    cancel = await other.op("requestNumberDeletion", number="+442070000010")
    assert cancel.status == 409  # reserved numbers are released directly instead
    assert (await other.op("releaseNumber", number="+442070000010")).status == 204


async def test_sip_phones_get_generated_credentials_and_routing_hears_of_every_change(
    harness: Harness, events: Events
) -> None:
    tenant = await harness.new_tenant("dev-sip")
    admin = harness.client(ADMIN, tenant)
    user = await harness.new_user(tenant, "pete@dev.example")
    created = await admin.op(
        "createDevice", {"kind": "sip_phone", "label": "Desk"}, user_id=user["user_id"]
    )
    assert created.status == 201
    device = created.body
    password = device["sip_password"]
    assert len(password) >= 22  # >= 128 random bits in URL-safe base64
    assert "md5_cred" not in device
    expected = hashlib.md5(f"{device['sip_username']}:asterisk:{password}".encode()).hexdigest()
    stored = await harness.service.stores.directory.db.devices.find_one(
        {"device_id": device["device_id"]}
    )
    assert stored is not None and stored["md5_cred"] == expected
    assert password not in str(stored)

    await events.settle()
    change = [e for e in events.devices if e.device.device_id == device["device_id"]]
    assert len(change) == 1 and not change[0].deleted
    assert (change[0].device.md5_cred, change[0].device.realm, change[0].device.kind) == (
        expected,
        "asterisk",
        "phone",
    )
    assert change[0].device.sip_username == device["sip_username"]

    listed = await list_sip(harness)
    assert device["sip_username"] in {d.sip_username for d in listed.devices}

    relabelled = await admin.op(
        "updateDevice",
        {"label": "Reception", "max_contacts": 2},
        user_id=user["user_id"],
        device_id=device["device_id"],
        if_match=created.etag,
    )
    assert (relabelled.status, relabelled.etag) == (200, '"2"')
    await events.settle()
    assert [
        (e.device.label, e.device.max_contacts)
        for e in events.devices
        if e.device.device_id == device["device_id"]
    ][-1] == ("Reception", 2)
    reset = await admin.op(
        "resetDevicePassword",
        user_id=user["user_id"],
        device_id=device["device_id"],
        if_match=relabelled.etag,
    )
    assert reset.status == 200 and reset.body["sip_password"] != password
    trunk = await admin.op(
        "createDevice",
        {"kind": "sip_trunk", "label": "PBX", "trunk_address": "203.0.113.5:5060"},
        user_id=user["user_id"],
    )
    assert trunk.status == 201 and "sip_password" not in trunk.body
    mobile = await admin.op(
        "createDevice",
        {"kind": "external", "label": "mobile", "number": "+447700900123"},
        user_id=user["user_id"],
    )
    assert mobile.status == 201
    bad = await admin.op(
        "createDevice",
        {"kind": "sip_trunk", "trunk_address": "not a host!"},
        user_id=user["user_id"],
    )
    assert (bad.status, bad.body["errors"][0]["field"]) == (422, "trunk_address")
    for _ in range(2):
        assert (
            await admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
        ).status == 201
    sixth = await admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
    assert sixth.status == 409

    own = harness.client(USER, tenant, subject_id=user["user_id"])
    mine = await own.op("listDevices", user_id=user["user_id"])
    assert [d["position"] for d in mine.body["items"]] == [1, 2, 3, 4, 5]
    assert all("md5_cred" not in d for d in mine.body["items"])
    assert (
        await own.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
    ).status == 403

    deleted = await admin.op("deleteDevice", user_id=user["user_id"], device_id=device["device_id"])
    assert deleted.status == 204
    await events.settle()
    gone = [e for e in events.devices if e.device.device_id == device["device_id"]]
    assert [e.deleted for e in gone] == [False, False, False, True]
    assert gone[-1].device.sip_username == device["sip_username"]
    assert device["sip_username"] not in {d.sip_username for d in (await list_sip(harness)).devices}

    # Deleting the user removes the rest of their devices (routing hears of each).
    await admin.op("deleteUser", user_id=user["user_id"])
    await events.settle()
    remaining = await harness.service.stores.directory.db.devices.count_documents(
        {"user_id": user["user_id"]}
    )
    assert remaining == 0
    assert sum(1 for e in events.devices if e.deleted and e.device.tenant_id == tenant) == 4


async def test_list_sip_devices_pages_across_tenants(harness: Harness) -> None:
    usernames = set()
    for slug in ("sip-page-a", "sip-page-b"):
        tenant = await harness.new_tenant(slug)
        user = await harness.new_user(tenant, f"u@{slug}.example")
        admin = harness.client(ADMIN, tenant)
        for _ in range(3):
            reply = await admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
            usernames.add(reply.body["sip_username"])
    seen: list[str] = []
    after = ""
    while True:
        page = await list_sip(harness, after, limit=4)
        seen += [d.sip_username for d in page.devices]
        if not page.next_after:
            break
        after = page.next_after
    assert seen == sorted(seen) and set(seen) == usernames
    assert len(seen) == 6


async def test_the_dev_fixture_loads_through_the_model_and_keeps_its_dial_strings(
    harness: Harness, tmp_path: Path
) -> None:
    ports = PortPlan(24000)  # only names the phones' ports here
    path = write_fixture(ports, tmp_path / "fixture.json")
    stores = harness.service.stores
    changed = await load_fixture(stores, path)
    assert {number for _, number, _ in changed} == {p.number for p in PEOPLE}
    answer = await resolve(harness, ALICE.number)
    assert (answer.status, answer.tenant_id, answer.user_id) == (
        Found.STATUS_FOUND,
        "acme",
        "alice",
    )
    assert [(d.device_id, d.kind, d.dial_string) for d in answer.devices] == [
        ("alice-desk", "sip", dial_string(ALICE, ports))
    ]
    # Loading again changes nothing routing cares about; the model's API shows the data.
    assert await load_fixture(stores, path) == []
    admin = harness.client(ADMIN, "acme")
    numbers = await admin.op("listNumbers", query={"status": "active"})
    assert {n["number"] for n in numbers.body["items"]} == {p.number for p in PEOPLE}
    devices = await admin.op("listDevices", user_id="alice")
    assert [d["kind"] for d in devices.body["items"]] == ["static"]
    # Fixture devices are not SIP accounts to provision.
    assert (await list_sip(harness)).devices == []


async def test_concurrent_creations_never_give_a_user_more_than_five_devices(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("dev-race")
    user = await harness.new_user(tenant, "race@dev.example")
    admin = harness.client(ADMIN, tenant)
    replies = await asyncio.gather(
        *(
            admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
            for _ in range(8)
        )
    )
    assert sorted(r.status for r in replies) == [201] * 5 + [409] * 3
    listed = await admin.op("listDevices", user_id=user["user_id"])
    assert len(listed.body["items"]) == 5
    assert len({d["position"] for d in listed.body["items"]}) == 5
    # A freed slot can be taken again, and the newcomer rings last.
    first = listed.body["items"][0]
    await admin.op("deleteDevice", user_id=user["user_id"], device_id=first["device_id"])
    again = await admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
    assert again.status == 201
    assert again.body["position"] > max(d["position"] for d in listed.body["items"])


async def test_data_of_the_first_fixture_only_model_is_upgraded_in_place(
    harness: Harness, tmp_path: Path
) -> None:
    """A dev database from before the admin API: tenants/users without versions, devices
    inside the user, numbers without a status."""
    db = harness.service.stores.directory.db
    await db.tenants.insert_one({"tenant_id": "acme", "name": "Acme Ltd"})
    await db.users.insert_one(
        {
            "tenant_id": "acme",
            "user_id": "alice",
            "name": "Alice",
            "devices": [{"device_id": "old", "dial_string": "PJSIP/phones/sip:old@h"}],
        }
    )
    await db.numbers.insert_one(
        {"number": ALICE.number, "tenant_id": "acme", "user_id": "alice", "version": 3}
    )
    stores = harness.service.stores
    await stores.ensure_indexes()
    ports = PortPlan(24000)
    await load_fixture(stores, write_fixture(ports, tmp_path / "fixture.json"))

    answer = await resolve(harness, ALICE.number)
    assert [d.dial_string for d in answer.devices] == [dial_string(ALICE, ports)]
    assert answer.version > 3
    admin = harness.client(ADMIN, "acme")
    alice = await admin.op("getUser", user_id="alice")
    assert alice.status == 200 and alice.etag
    assert "devices" not in alice.body
    renamed = await admin.op(
        "updateUser", {"name": "Alice A."}, user_id="alice", if_match=alice.etag
    )
    assert renamed.status == 200
    assert (
        await admin.op("updateUser", {"email": "alice@acme.example"}, user_id="alice")
    ).status == 422
    tenant = await harness.operator.op("getTenant", tenant_id="acme")
    assert (tenant.status, tenant.body["status"]) == (200, "active")


async def test_a_suspended_users_or_tenants_phones_leave_asterisk_and_come_back(
    harness: Harness, events: Events
) -> None:
    tenant = await harness.new_tenant("dev-suspend")
    admin = harness.client(ADMIN, tenant)
    user = await harness.new_user(tenant, "sus@dev.example")
    phone = await admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])
    username = phone.body["sip_username"]

    async def provisioned() -> bool:
        return username in {d.sip_username for d in (await list_sip(harness)).devices}

    def last_event() -> devices_pb2.SipDeviceChanged:
        return [e for e in events.devices if e.device.sip_username == username][-1]

    assert await provisioned()
    await admin.op("updateUser", {"status": "suspended"}, user_id=user["user_id"])
    await events.settle()
    assert last_event().deleted and not await provisioned()
    # Changing a suspended user's phone does not bring it back.
    await admin.op(
        "updateDevice",
        {"label": "Desk"},
        user_id=user["user_id"],
        device_id=phone.body["device_id"],
    )
    await events.settle()
    assert last_event().deleted and not await provisioned()
    await admin.op("updateUser", {"status": "active"}, user_id=user["user_id"])
    await events.settle()
    assert not last_event().deleted and last_event().device.md5_cred and await provisioned()

    await harness.operator.op("suspendTenant", tenant_id=tenant)
    await events.settle()
    assert last_event().deleted and not await provisioned()
    await harness.operator.op("activateTenant", tenant_id=tenant)
    await events.settle()
    assert not last_event().deleted and await provisioned()
