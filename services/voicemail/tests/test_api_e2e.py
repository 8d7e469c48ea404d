"""Voicemail's REST operations through the running service (as the gateway forwards them):
settings, PIN, greetings and how they change what a caller hears, messages, voice messages
to several users, and the 4xx answers to bad input."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise.voicemail.v1 import deposit_pb2
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.voicemail_testing import api, eventually, mails_to, tone_wav
from ringwise_kit import bus, subjects

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

TENANT = "acme"
DB = "ringwise_voicemail"
_users = itertools.count(1)


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "voicemail-api-e2e")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        platform.infra.endpoints.mongo_url, tz_aware=True
    )
    yield client
    await client.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def new_user(nc: NatsClient, **settings: Any) -> dict[str, str]:
    user_id = f"api{next(_users)}-{datetime.now(UTC):%H%M%S%f}"
    path = {"tenant_id": TENANT, "user_id": user_id}
    status, body = await api(
        nc, "putVoicemailSettings", path, {"email": f"{user_id}@acme.test", **settings}
    )
    assert status == 201, body
    return path


async def begin(nc: NatsClient, user_id: str) -> Any:
    return await bus.request(
        nc,
        subjects.VOICEMAIL_DEPOSIT_BEGIN,
        deposit_pb2.DepositBeginRequest(tenant_id=TENANT, user_id=user_id, call_id="api"),
        deposit_pb2.DepositBeginReply,
    )


async def test_bad_settings_are_refused_field_by_field(nc: NatsClient) -> None:
    path = await new_user(nc)
    status, problem = await api(
        nc,
        "putVoicemailSettings",
        path,
        {"email": "not an address", "time_zone": "Mars/Olympus", "email_keep": "yes"},
    )
    assert status == 422
    fields = sorted(e["field"] for e in problem["errors"])
    assert fields == ["/email", "/email_keep", "/time_zone"]
    status, problem = await api(nc, "putVoicemailSettings", path, {"mwi_targets": ["a b"]})
    assert status == 422 and problem["errors"][0]["field"] == "/mwi_targets"
    status, problem = await api(nc, "putVoicemailSettings", path, None)
    assert status == 400
    status, _ = await api(
        nc, "getVoicemailSettings", {"tenant_id": TENANT, "user_id": "no-such-mailbox"}
    )
    assert status == 404


async def test_a_stale_if_match_is_refused_and_a_fresh_one_accepted(nc: NatsClient) -> None:
    path = await new_user(nc)
    status, body = await api(nc, "getVoicemailSettings", path)
    assert status == 200
    status, _ = await api(nc, "putVoicemailSettings", path, {"display_name": "A"}, if_match='"999"')
    assert status == 412
    status, body = await api(
        nc, "putVoicemailSettings", path, {"display_name": "A"}, if_match='"1"'
    )
    assert status == 200 and body["display_name"] == "A"


async def test_another_tenants_user_cannot_reach_the_mailbox(nc: NatsClient) -> None:
    path = await new_user(nc)
    stranger = api_pb2.Principal(subject_id="eve", tenant_id="other", role=api_pb2.ROLE_USER)
    status, _ = await api(nc, "getVoicemailSettings", path, principal=stranger)
    assert status == 404


@pytest.mark.parametrize(
    ("pin", "why"),
    [("123", "at least 4"), ("0123", "cannot begin with zero"), ("12a4", "digits only")],
)
async def test_pins_breaking_the_rules_are_refused(nc: NatsClient, pin: str, why: str) -> None:
    path = await new_user(nc)
    status, problem = await api(nc, "setVoicemailPin", path, {"pin": pin})
    assert status == 422
    assert why in problem["errors"][0]["message"]


async def test_a_pin_change_is_stored_hashed_and_audited(
    nc: NatsClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    path = await new_user(nc)
    status, _ = await api(nc, "setVoicemailPin", path, {"pin": "4711"})
    assert status == 204
    doc = await mongo[DB].mailboxes.find_one({"_id": f"{TENANT}:{path['user_id']}"})
    assert doc is not None and doc["pin_hash"].startswith("$argon2id$")
    audit = await mongo[DB].audit.find_one({"user_id": path["user_id"]})
    assert audit is not None and audit["what"] == "pin changed"


async def test_greetings_change_what_the_caller_hears(nc: NatsClient) -> None:
    path = await new_user(nc)
    user_id = path["user_id"]
    greeting = {**path, "kind": "permanent"}
    for bad, field in [
        ({"audio_base64": "%%%"}, "not valid base64"),
        ({"audio_base64": b64(b"plain text")}, "not a WAV recording"),
        ({"audio_base64": b64(tone_wav(31))}, "longer than 30 s"),
    ]:
        status, problem = await api(nc, "putVoicemailGreeting", greeting, bad)
        assert status == 422 and field in problem["errors"][0]["message"]
    status, _ = await api(nc, "putVoicemailGreeting", {**path, "kind": "weekend"}, {"x": 1})
    assert status == 404

    status, body = await api(
        nc, "putVoicemailGreeting", greeting, {"audio_base64": b64(tone_wav(4))}
    )
    assert status == 201 and body["duration_s"] == 4.0
    started = await begin(nc, user_id)
    assert started.greeting == "permanent greeting"
    [personal, leave] = started.greeting_media
    assert personal.startswith("sound:http") and "/greetings/permanent-" in personal
    assert leave == "sound:vm-intro"

    today = {**path, "kind": "temporary"}
    status, body = await api(nc, "putVoicemailGreeting", today, {"audio_base64": b64(tone_wav(2))})
    assert status == 201 and body["for_day"] == datetime.now(UTC).date().isoformat()
    assert (await begin(nc, user_id)).greeting == "temporary greeting"

    away = {**path, "kind": "extended_absence"}
    status, _ = await api(nc, "putVoicemailGreeting", away, {"audio_base64": b64(tone_wav(2))})
    assert status == 201
    status, _ = await api(nc, "putVoicemailSettings", path, {"extended_absence": True})
    assert status == 200
    absent = await begin(nc, user_id)
    assert absent.status == deposit_pb2.DepositBeginReply.STATUS_GREETING_ONLY
    assert "sound:vm-intro" not in absent.greeting_media

    status, _ = await api(nc, "putVoicemailSettings", path, {"extended_absence": False})
    status, _ = await api(nc, "deleteVoicemailGreeting", today)
    assert status == 204
    status, _ = await api(nc, "deleteVoicemailGreeting", today)
    assert status == 404
    assert (await begin(nc, user_id)).greeting == "permanent greeting"


async def test_a_voice_message_to_several_users_reaches_each_once(
    platform: LocalPlatform, nc: NatsClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    team = [await new_user(nc), await new_user(nc)]
    ids = [p["user_id"] for p in team]
    send = {"tenant_id": TENANT}
    status, problem = await api(
        nc,
        "sendVoiceMessage",
        send,
        {"to_user_ids": [*ids, "ghost"], "audio_base64": b64(tone_wav(3))},
    )
    assert status == 422 and problem["errors"] == [
        {"field": "/to_user_ids", "message": "no mailbox: ghost"}
    ]
    status, body = await api(
        nc,
        "sendVoiceMessage",
        send,
        {"to_user_ids": ids, "audio_base64": b64(tone_wav(3)), "from_name": "The boss"},
    )
    assert status == 202
    sent = {m["user_id"]: m["message_id"] for m in body["messages"]}
    assert sorted(sent) == sorted(ids)

    async def both_emailed() -> bool:
        count = await mongo[DB].messages.count_documents(
            {"_id": {"$in": list(sent.values())}, "emailed_at": {"$ne": None}}
        )
        return count == 2

    assert await eventually(both_emailed)
    for user_id, message_id in sent.items():
        [mail] = mails_to(platform, f"{user_id}@acme.test")
        assert mail["X-Ringwise-Message-Id"] == message_id
        assert "The boss" in mail["Subject"]


async def test_messages_list_in_pages_and_bad_paging_is_a_400(
    nc: NatsClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    path = await new_user(nc)
    send = {"tenant_id": TENANT}
    for _ in range(3):
        status, _ = await api(
            nc,
            "sendVoiceMessage",
            send,
            {"to_user_ids": [path["user_id"]], "audio_base64": b64(tone_wav(2))},
        )
        assert status == 202

    async def three() -> bool:
        return await mongo[DB].messages.count_documents({"user_id": path["user_id"]}) == 3

    assert await eventually(three)
    seen: list[str] = []
    cursor = ""
    while True:
        query = [("limit", "2")] + ([("cursor", cursor)] if cursor else [])
        status, page = await api(nc, "listVoicemailMessages", path, query=query)
        assert status == 200
        seen += [m["message_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 3
    for bad in ([("limit", "0")], [("limit", "x")], [("cursor", "!!")], [("folder", "trash")]):
        status, _ = await api(nc, "listVoicemailMessages", path, query=bad)
        assert status == 400, bad
    one = {**path, "message_id": seen[0]}
    status, _ = await api(nc, "updateVoicemailMessage", one, {"folder": "archived"})
    assert status == 200
    status, page = await api(nc, "listVoicemailMessages", path, query=[("folder", "archived")])
    assert [m["message_id"] for m in page["items"]] == [seen[0]]
    status, problem = await api(nc, "updateVoicemailMessage", one, {"folder": "bin"})
    assert status == 422 and problem["errors"][0]["field"] == "/folder"
    status, _ = await api(nc, "getVoicemailMessage", {**path, "message_id": "0" * 32})
    assert status == 404
