"""Deposits through the real voicemail process: Asterisk's spool -> S3 + Mongo -> email ->
MWI counts in Asterisk -> alert events; and the SIGKILL-during-a-burst guarantee."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.voicemail.v1 import alerts_pb2, deposit_pb2
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippPhone
from ringwise_dev.voicemail_testing import (
    api,
    eventually,
    last_mwi,
    mails_to,
    place_recording,
    recording_dir,
    tone_wav,
)
from ringwise_kit import bus, subjects
from ringwise_kit.events import to_timestamp
from ringwise_voicemail.messages.deposits import PIPELINE_CONCURRENCY

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

TENANT = "acme"
DB = "ringwise_voicemail"
_users = itertools.count(1)


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "voicemail-e2e")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        platform.infra.endpoints.mongo_url, tz_aware=True
    )
    yield client
    await client.close()


async def new_mailbox(nc: NatsClient, **settings: Any) -> str:
    user_id = f"vm{next(_users)}-{datetime.now(UTC):%H%M%S%f}"
    body = {"email": f"{user_id}@example.test", "time_zone": "Europe/London", **settings}
    status, reply = await api(
        nc, "putVoicemailSettings", {"tenant_id": TENANT, "user_id": user_id}, body
    )
    assert status == 201, reply
    return user_id


async def begin(nc: NatsClient, user_id: str) -> deposit_pb2.DepositBeginReply:
    return await bus.request(
        nc,
        subjects.VOICEMAIL_DEPOSIT_BEGIN,
        deposit_pb2.DepositBeginRequest(
            tenant_id=TENANT,
            user_id=user_id,
            call_id="c-" + user_id,
            caller_number="+441632960001",
            availability=deposit_pb2.AVAILABILITY_AVAILABLE,
        ),
        deposit_pb2.DepositBeginReply,
    )


def complete_request(
    user_id: str, started: deposit_pb2.DepositBeginReply, seconds: float, **extra: Any
) -> deposit_pb2.DepositCompleteRequest:
    return deposit_pb2.DepositCompleteRequest(
        deposit_id=started.deposit_id,
        tenant_id=TENANT,
        user_id=user_id,
        call_id="c-" + started.deposit_id,
        recording_name=started.recording_name,
        duration_ms=round(seconds * 1000),
        caller_number="+441632960001",
        caller_name="Lucy Lane",
        started_at=to_timestamp(datetime.now(UTC)),
        recording_format="wav",
        **extra,
    )


async def complete(
    nc: NatsClient, req: deposit_pb2.DepositCompleteRequest, timeout_s: float = 2.0
) -> deposit_pb2.DepositCompleteReply:
    return await bus.request(
        nc, subjects.VOICEMAIL_DEPOSIT_COMPLETE, req, deposit_pb2.DepositCompleteReply, timeout_s
    )


_phone_slots = itertools.count(20)


@pytest_asyncio.fixture(loop_scope="session")
async def mwi_phone(platform: LocalPlatform) -> AsyncIterator[SippPhone]:
    """A sipp phone that takes message-waiting NOTIFYs (a static contact: its SIP URI)."""
    port = platform.ports.phones + next(_phone_slots)
    phone = await platform.sipp.start_phone(PhoneKind.MWI, port)
    yield phone
    await phone.stop()


async def alerts_for(platform: LocalPlatform, user_id: str) -> list[alerts_pb2.MessageReceived]:
    nc = await bus.connect(platform.infra.endpoints.nats_url, "voicemail-e2e-alerts")
    try:
        js = nc.jetstream()
        subject = subjects.voicemail_event(TENANT, subjects.VOICEMAIL_MESSAGE_RECEIVED)
        info = await js.stream_info(subjects.VOICEMAIL_STREAM, subjects_filter=subject)
        pending = (info.state.subjects or {}).get(subject, 0)
        sub = await js.subscribe(subject, ordered_consumer=True)
        found = []
        for _ in range(pending):
            event = alerts_pb2.MessageReceived()
            event.ParseFromString((await sub.next_msg(timeout=5)).data)
            if event.user_id == user_id:
                found.append(event)
        await sub.unsubscribe()
        return found
    finally:
        await nc.drain()


async def test_a_deposit_is_stored_emailed_counted_and_alerted(
    platform: LocalPlatform,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    mwi_phone: SippPhone,
) -> None:
    user_id = await new_mailbox(
        nc, alerts={"sms": True, "email": False, "call": False}, mwi_targets=[mwi_phone.uri]
    )
    started = await begin(nc, user_id)
    assert started.status == deposit_pb2.DepositBeginReply.STATUS_RECORD
    assert list(started.greeting_media) == ["sound:vm-nobodyavail", "sound:vm-intro"]
    assert started.max_seconds == 180
    place_recording(platform, started.recording_name, tone_wav(7.0))

    # Routing's own measurement is a little off; the stored duration comes from the audio.
    done = await complete(nc, complete_request(user_id, started, 6.6, urgent=True))
    assert done.status == deposit_pb2.DepositCompleteReply.STATUS_ACCEPTED
    message_id = done.message_id

    messages = mongo[DB].messages

    async def stored() -> dict[str, Any] | None:
        return await messages.find_one({"_id": message_id, "emailed_at": {"$ne": None}})

    doc = await eventually(stored)
    assert doc is not None, "the message was never stored and emailed"
    assert doc["duration_s"] == pytest.approx(7.0, abs=0.01)
    assert doc["folder"] == "new"
    assert doc["urgent"] is True
    assert doc["audio_key"] == f"{TENANT}/voicemail/{user_id}/messages/{message_id}.wav"

    [mail] = mails_to(platform, f"{user_id}@example.test")
    assert mail["Subject"] == "URGENT: New voicemail from Lucy Lane <+441632960001>"
    assert mail["Message-ID"] == f"<vm-{message_id}@ringwise>"
    [attachment] = [part for part in mail.walk() if part.get_content_maintype() == "audio"]
    assert attachment.get_payload(decode=True) == tone_wav(7.0)
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and "Duration: 7 s" in body.get_content()

    # (waiting, new, old, urgent new) as the phone's NOTIFY said.
    assert await last_mwi(mwi_phone, (True, 1, 0, 1)) == (True, 1, 0, 1)
    # Asterisk's copy is deleted once the message is safe in S3.
    assert not (recording_dir(platform) / f"{started.recording_name}.wav").exists()

    [alert] = await eventually(lambda: alerts_for(platform, user_id))
    assert alert.message_id == message_id
    assert alert.urgent and alert.alert_sms and not alert.alert_call
    assert alert.duration_s == 7

    # Saving it moves the light from new to old; deleting it clears it.
    path = {"tenant_id": TENANT, "user_id": user_id, "message_id": message_id}
    status, saved = await api(nc, "updateVoicemailMessage", path, {"folder": "saved"})
    assert status == 200 and saved["folder"] == "saved"
    assert await last_mwi(mwi_phone, (False, 0, 1, 0)) == (False, 0, 1, 0)
    status, got = await api(nc, "getVoicemailMessage", path)
    assert status == 200
    async with aiohttp.ClientSession() as session, session.get(got["audio_url"]) as resp:
        assert resp.status == 200
        assert await resp.read() == tone_wav(7.0)
    status, _ = await api(nc, "deleteVoicemailMessage", path)
    assert status == 204
    assert await messages.find_one({"_id": message_id}) is None
    async with aiohttp.ClientSession() as session, session.get(got["audio_url"]) as resp:
        assert resp.status == 404
    assert await last_mwi(mwi_phone, (False, 0, 0, 0)) == (False, 0, 0, 0)


async def test_a_hang_up_shorter_than_the_minimum_is_dropped_not_stored(
    platform: LocalPlatform, nc: NatsClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    user_id = await new_mailbox(nc)
    started = await begin(nc, user_id)
    place_recording(platform, started.recording_name, tone_wav(1.2))
    done = await complete(nc, complete_request(user_id, started, 1.2))
    assert done.status == deposit_pb2.DepositCompleteReply.STATUS_DROPPED_TOO_SHORT
    assert not (recording_dir(platform) / f"{started.recording_name}.wav").exists()
    assert await mongo[DB].messages.count_documents({"user_id": user_id}) == 0
    assert mails_to(platform, f"{user_id}@example.test") == []


async def test_no_mailbox_means_routing_keeps_its_old_treatment(nc: NatsClient) -> None:
    started = await begin(nc, "nobody-has-this-mailbox")
    assert started.status == deposit_pb2.DepositBeginReply.STATUS_NO_MAILBOX
    assert started.deposit_id == ""


async def test_an_email_only_user_gets_a_link_and_keeps_nothing_in_the_mailbox(
    platform: LocalPlatform,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    mwi_phone: SippPhone,
) -> None:
    user_id = await new_mailbox(
        nc, email_attach=False, email_keep=False, mwi_targets=[mwi_phone.uri]
    )
    started = await begin(nc, user_id)
    place_recording(platform, started.recording_name, tone_wav(3.0))
    done = await complete(nc, complete_request(user_id, started, 3.0))
    assert done.status == deposit_pb2.DepositCompleteReply.STATUS_ACCEPTED

    async def finished() -> dict[str, Any] | None:
        return await mongo[DB].deposits_done.find_one({"_id": done.message_id})

    assert await eventually(finished)
    [mail] = mails_to(platform, f"{user_id}@example.test")
    assert not [p for p in mail.walk() if p.get_content_maintype() == "audio"]
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and "Listen: http" in body.get_content()
    assert await mongo[DB].messages.count_documents({"user_id": user_id}) == 0
    assert await last_mwi(mwi_phone, (False, 0, 0, 0)) == (False, 0, 0, 0)


async def test_voicemail_sigkilled_during_a_burst_of_100_deposits_loses_and_repeats_nothing(
    platform: LocalPlatform,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    mwi_phone: SippPhone,
) -> None:
    user_id = await new_mailbox(nc, mwi_targets=[mwi_phone.uri])
    burst = 100
    requests = []
    for i in range(burst):
        started = await begin(nc, user_id)
        seconds = 2.0 + (i % 7)
        place_recording(platform, started.recording_name, tone_wav(seconds, hz=300 + i))
        requests.append((complete_request(user_id, started, seconds), seconds))

    async def deliver(req: deposit_pb2.DepositCompleteRequest) -> None:
        # Routing's retry: the same deposit id until voicemail accepts it.
        while True:
            with contextlib.suppress(Exception):
                reply = await complete(nc, req, timeout_s=1.0)
                assert reply.status == deposit_pb2.DepositCompleteReply.STATUS_ACCEPTED
                return
            await asyncio.sleep(0.2)

    voicemail = platform.services["voicemail"]
    senders = [asyncio.create_task(deliver(req)) for req, _ in requests[: burst // 2]]
    messages = mongo[DB].messages

    # Kill it while the pipeline is busy with the first half and the second half is arriving.
    async def some_stored() -> bool:
        return await messages.count_documents({"user_id": user_id}) >= 10

    assert await eventually(some_stored, every_s=0.02)
    senders += [asyncio.create_task(deliver(req)) for req, _ in requests[burst // 2 :]]
    await asyncio.sleep(0.05)
    voicemail.kill()
    stored_at_kill = await messages.count_documents({"user_id": user_id})
    # The send ledger right after the kill: the messages whose end of DATA had gone out with
    # no record of the 250. Only these can be emailed twice.
    uncertain_at_kill = {
        d["_id"]
        async for d in mongo[DB].email_sends.find(
            {
                "_id": {"$in": [r.deposit_id for r, _ in requests]},
                "committing_at": {"$ne": None},
                "sent_at": None,
            }
        )
    }
    await asyncio.sleep(0.5)
    await voicemail.start_and_wait()
    await asyncio.wait_for(asyncio.gather(*senders), 60)

    async def all_done() -> bool:
        done = await mongo[DB].deposits_done.count_documents(
            {"_id": {"$in": [r.deposit_id for r, _ in requests]}}
        )
        return done == burst

    assert await eventually(all_done, timeout_s=120, every_s=0.5)
    assert stored_at_kill < burst, "the kill came after the burst; it proved nothing"

    docs = [d async for d in messages.find({"user_id": user_id})]
    assert sorted(d["_id"] for d in docs) == sorted(r.deposit_id for r, _ in requests)
    lengths = {r.deposit_id: s for r, s in requests}
    assert all(d["duration_s"] == pytest.approx(lengths[d["_id"]], abs=0.01) for d in docs)

    emailed = mails_to(platform, f"{user_id}@example.test")
    sent = Counter(m["X-Ringwise-Message-Id"] for m in emailed)
    assert set(sent) == set(lengths), "every message emailed"
    assert all(m["Message-ID"] == f"<vm-{m['X-Ringwise-Message-Id']}@ringwise>" for m in emailed)
    # SMTP cannot be exactly-once across a crash: an email whose end of DATA went out just
    # before the kill, with its 250 not yet recorded, goes again with the same Message-ID
    # (mail stores collapse it). Every other message is emailed exactly once.
    repeated = {message_id for message_id, n in sent.items() if n > 1}
    assert repeated <= uncertain_at_kill, "a resend outside the ledger's window"
    assert all(sent[m] == 2 for m in repeated)
    assert len(uncertain_at_kill) <= PIPELINE_CONCURRENCY
    assert all(n == 1 for m, n in sent.items() if m not in uncertain_at_kill)
    ledger = {
        d["_id"]: d async for d in mongo[DB].email_sends.find({"_id": {"$in": list(lengths)}})
    }
    assert all(ledger[m]["sent_at"] is not None for m in lengths)
    assert {m for m, d in ledger.items() if d.get("uncertain_resends")} == uncertain_at_kill
    print(
        f"\nburst: {burst} deposits, {stored_at_kill} stored at the kill, "
        f"{len(emailed)} emails, {len(uncertain_at_kill)} in the window at the kill, "
        f"{len(repeated)} of them emailed twice"
    )

    assert await last_mwi(mwi_phone, (True, burst, 0, 0)) == (True, burst, 0, 0)
    alerts = await alerts_for(platform, user_id)
    assert sorted(a.message_id for a in alerts) == sorted(lengths)
    left = [r.recording_name for r, _ in requests]
    assert not [n for n in left if (recording_dir(platform) / f"{n}.wav").exists()]
