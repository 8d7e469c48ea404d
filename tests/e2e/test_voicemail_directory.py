"""Voicemail asks the directory: message-waiting NOTIFYs go to the mailbox owner's registered
SIP phones as the directory knows them (one NOTIFY per phone, none without phones), and a
voice message sent to a team reaches each active member once, also when the request is
retried. Real gateway, directory, routing, voicemail and Asterisk; sipp phones register with
the credentials the directory generated."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise.voicemail.v1 import deposit_pb2
from ringwise_dev.gateway_client import GatewayClient, new_tenant
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippPhone
from ringwise_dev.testing import register_until
from ringwise_dev.voicemail_testing import (
    api,
    eventually,
    last_mwi,
    mails_to,
    place_recording,
    tone_wav,
)
from ringwise_kit import bus, subjects
from ringwise_kit.events import to_timestamp

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DB = "ringwise_voicemail"


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "voicemail-directory-e2e")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        platform.infra.endpoints.mongo_url, tz_aware=True
    )
    yield client
    await client.close()


async def new_user(admin: GatewayClient, tenant_id: str, name: str) -> str:
    user = await admin.call(
        "POST",
        f"/v1/tenants/{tenant_id}/users",
        {"email": f"{name}@{tenant_id}.example", "name": name.title()},
        status=201,
    )
    return str(user["user_id"])


async def open_mailbox(nc: NatsClient, tenant_id: str, user_id: str) -> None:
    status, reply = await api(
        nc,
        "putVoicemailSettings",
        {"tenant_id": tenant_id, "user_id": user_id},
        {"email": f"{user_id}@{tenant_id}.test"},
    )
    assert status in (200, 201), reply


async def leave(
    platform: LocalPlatform, nc: NatsClient, tenant_id: str, user_id: str, seconds: float
) -> str:
    """A message deposited the way routing does it (recording in Asterisk's spool)."""
    begun = await bus.request(
        nc,
        subjects.VOICEMAIL_DEPOSIT_BEGIN,
        deposit_pb2.DepositBeginRequest(tenant_id=tenant_id, user_id=user_id, call_id="dir-e2e"),
        deposit_pb2.DepositBeginReply,
    )
    assert begun.status == deposit_pb2.DepositBeginReply.STATUS_RECORD
    place_recording(platform, begun.recording_name, tone_wav(seconds))
    done = await bus.request(
        nc,
        subjects.VOICEMAIL_DEPOSIT_COMPLETE,
        deposit_pb2.DepositCompleteRequest(
            deposit_id=begun.deposit_id,
            tenant_id=tenant_id,
            user_id=user_id,
            recording_name=begun.recording_name,
            duration_ms=round(seconds * 1000),
            caller_number="+441632960077",
            started_at=to_timestamp(datetime.now(UTC)),
        ),
        deposit_pb2.DepositCompleteReply,
    )
    assert done.status == deposit_pb2.DepositCompleteReply.STATUS_ACCEPTED
    return done.message_id


async def test_mwi_reaches_each_registered_phone_of_the_owner_and_nothing_without_phones(
    platform: LocalPlatform,
    session: aiohttp.ClientSession,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    tenant = await new_tenant(platform, session)
    t = tenant.tenant_id
    two_phones = await new_user(tenant.admin, t, "tess")
    no_phones = await new_user(tenant.admin, t, "nora")
    lamps: list[SippPhone] = []
    try:
        for offset, label in ((70, "Desk"), (72, "Softphone")):
            device = await tenant.admin.call(
                "POST",
                f"/v1/tenants/{t}/users/{two_phones}/devices",
                {"kind": "sip_phone", "label": label},
                status=201,
            )
            port = platform.ports.phones + offset
            lamp = await platform.sipp.start_phone(PhoneKind.MWI, port)
            lamps.append(lamp)
            await register_until(
                platform, device["sip_username"], device["sip_password"], port, registered=True
            )
        # A mobile is no SIP phone: it takes no NOTIFY.
        await tenant.admin.call(
            "POST",
            f"/v1/tenants/{t}/users/{two_phones}/devices",
            {"kind": "external", "label": "Mobile", "number": "+447700900321"},
            status=201,
        )
        for user_id in (two_phones, no_phones):
            await open_mailbox(nc, t, user_id)

        await leave(platform, nc, t, two_phones, 3.0)
        for lamp in lamps:
            assert await last_mwi(lamp, (True, 1, 0, 0)) == (True, 1, 0, 0)
        # Each phone got its own NOTIFY, and only one for one message.
        await asyncio.sleep(1.0)
        assert [len(lamp.mwi_counts()) for lamp in lamps] == [1, 1]

        # Saving it through the API: both lamps move from new to old.
        [doc] = [d async for d in mongo[DB].messages.find({"tenant_id": t, "user_id": two_phones})]
        path = {"tenant_id": t, "user_id": two_phones, "message_id": doc["_id"]}
        status, _ = await api(nc, "updateVoicemailMessage", path, {"folder": "saved"})
        assert status == 200
        for lamp in lamps:
            assert await last_mwi(lamp, (False, 0, 1, 0)) == (False, 0, 1, 0)

        # No phones: the message is stored and emailed, no NOTIFY goes anywhere, no error.
        message_id = await leave(platform, nc, t, no_phones, 3.0)

        async def finished() -> dict[str, Any] | None:
            return await mongo[DB].deposits_done.find_one({"_id": message_id})

        done = await eventually(finished)
        assert done is not None and done["outcome"] == "stored"
        assert len(mails_to(platform, f"{no_phones}@{t}.test")) == 1
        assert [len(lamp.mwi_counts()) for lamp in lamps] == [2, 2]
    finally:
        for lamp in lamps:
            await lamp.stop()


async def test_a_voice_message_to_a_team_reaches_each_active_member_once(
    platform: LocalPlatform,
    session: aiohttp.ClientSession,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    tenant = await new_tenant(platform, session)
    t = tenant.tenant_id
    admin = tenant.admin
    ann, ben, cat, dan = [await new_user(admin, t, n) for n in ("ann", "ben", "cat", "dan")]
    for user_id in (ann, ben, cat):
        await open_mailbox(nc, t, user_id)  # dan has no mailbox
    # cat is suspended: the directory leaves her out of the team.
    await admin.call("PATCH", f"/v1/tenants/{t}/users/{cat}", {"status": "suspended"})
    team = await admin.call(
        "POST",
        f"/v1/tenants/{t}/teams",
        {
            "name": "Support",
            "extension": "700",
            "ring_strategy": "sequential",
            "members": [ben, ann, cat, dan],
        },
        status=201,
    )
    empty = await admin.call(
        "POST",
        f"/v1/tenants/{t}/teams",
        {"name": "Nobody", "extension": "701", "ring_strategy": "random"},
        status=201,
    )
    audio = base64.b64encode(tone_wav(4.0)).decode()
    sender = api_pb2.Principal(subject_id=ann, tenant_id=t, role=api_pb2.ROLE_USER)

    async def send(team_id: str, key: str) -> tuple[int, Any]:
        return await api(
            nc,
            "sendVoiceMessage",
            {"tenant_id": t},
            {"to_team_id": team_id, "audio_base64": audio, "from_name": "Ann"},
            principal=sender,
            idempotency_key=key,
        )

    status, first = await send(team["team_id"], "broadcast-1")
    assert status == 202, first
    assert [m["user_id"] for m in first["messages"]] == [ben, ann]
    assert first["skipped_user_ids"] == [dan]
    # The client's retry (its answer was lost): the same messages, nothing delivered twice.
    status, again = await send(team["team_id"], "broadcast-1")
    assert (status, again["messages"]) == (202, first["messages"])

    messages = mongo[DB].messages
    ids = [m["message_id"] for m in first["messages"]]

    async def delivered() -> bool:
        count = await messages.count_documents({"_id": {"$in": ids}, "emailed_at": {"$ne": None}})
        return count == len(ids)

    assert await eventually(delivered)
    # After the pipeline finished, a late retry still adds nothing.
    status, late = await send(team["team_id"], "broadcast-1")
    assert (status, late["messages"]) == (202, first["messages"])
    await asyncio.sleep(2.0)
    per_user = Counter(
        [
            d["user_id"]
            async for d in messages.find({"tenant_id": t, "user_id": {"$in": [ann, ben]}})
        ]
    )
    assert per_user == {ann: 1, ben: 1}
    for user_id in (ann, ben):
        assert len(mails_to(platform, f"{user_id}@{t}.test")) == 1
        [doc] = [d async for d in messages.find({"tenant_id": t, "user_id": user_id})]
        assert doc["sender_user_id"] == ann and doc["duration_s"] == pytest.approx(4.0, abs=0.05)
    assert await messages.count_documents({"tenant_id": t, "user_id": cat}) == 0

    # Another request is another message; so is another message under a reused key.
    status, other = await send(team["team_id"], "broadcast-2")
    assert status == 202 and {m["message_id"] for m in other["messages"]}.isdisjoint(ids)
    status, reused = await api(
        nc,
        "sendVoiceMessage",
        {"tenant_id": t},
        {"to_team_id": team["team_id"], "audio_base64": base64.b64encode(tone_wav(5.0)).decode()},
        principal=sender,
        idempotency_key="broadcast-1",
    )
    assert status == 202 and {m["message_id"] for m in reused["messages"]}.isdisjoint(ids)

    status, problem = await send("tm_nosuchteam", "broadcast-3")
    assert status == 404, problem
    status, problem = await send(empty["team_id"], "broadcast-4")
    assert (status, problem["errors"][0]["field"]) == (422, "/to_team_id")
    status, problem = await api(
        nc,
        "sendVoiceMessage",
        {"tenant_id": t},
        {"to_team_id": team["team_id"], "to_user_ids": [ann], "audio_base64": audio},
        principal=sender,
    )
    assert status == 422, problem
