"""Callers nobody answers leave voicemail: real Asterisk, sipp callers speaking (pcap RTP),
the voicemail service storing, emailing and lighting the message-waiting lamp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise_dev.fixture import CAROL, TENANT
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippPhone
from ringwise_dev.testing import StartPhone, new_caller
from ringwise_dev.voicemail_testing import (
    api,
    eventually,
    keypad_scenario,
    last_mwi,
    mails_to,
    sound_seconds,
    speech_wav,
)
from ringwise_kit import bus
from ringwise_voicemail.mailbox.deposit import trim_silence
from ringwise_voicemail.messages.audio import wav_duration_s

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DB = "ringwise_voicemail"
# What the caller hears before the beep ends, with no personal greeting: the system greeting.
GREETING = ("vm-nobodyavail", "vm-intro", "beep")
PCAP_SECONDS = 7.05  # sipp's g711a.pcap


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "voicemail-calls-e2e")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        platform.infra.endpoints.mongo_url, tz_aware=True
    )
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def carols_lamp(platform: LocalPlatform) -> AsyncIterator[SippPhone]:
    """Carol's desk phone as far as message waiting goes (a sipp phone taking NOTIFYs)."""
    phone = await platform.sipp.start_phone(PhoneKind.MWI, platform.ports.phones + 30)
    yield phone
    await phone.stop()


async def test_a_caller_nobody_answers_leaves_a_message_that_is_stored_emailed_and_lit(
    platform: LocalPlatform,
    start_phone: StartPhone,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    carols_lamp: SippPhone,
) -> None:
    await start_phone(PhoneKind.NOANSWER, CAROL)
    try:
        await leave_and_check(platform, nc, mongo, carols_lamp)
    finally:
        # Other tests expect Carol's unanswered calls to get the "not answering" prompt.
        await mongo[DB].mailboxes.delete_one({"_id": f"{TENANT}:{CAROL.user_id}"})


async def leave_and_check(
    platform: LocalPlatform,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    carols_lamp: SippPhone,
) -> None:
    status, mailbox = await api(
        nc,
        "putVoicemailSettings",
        {"tenant_id": TENANT, "user_id": CAROL.user_id},
        {"email": "carol@acme.test", "mwi_targets": [carols_lamp.uri]},
    )
    assert status in (200, 201), mailbox
    greeting_s = sound_seconds(platform, *GREETING)
    listen_ms = round(greeting_s * 1000) + 500
    talk_ms = round(PCAP_SECONDS * 1000) + 500
    caller = new_caller()

    result = await platform.sipp.call(
        CAROL.number,
        caller=caller,
        scenario="pstn_caller_voicemail.xml",
        extra_args=["-set", "greeting_ms", str(listen_ms), "-set", "talk_ms", str(talk_ms)],
        timeout_s=60,
    )
    assert result.exit_code == 0, result.output_tail

    messages = mongo[DB].messages

    async def emailed() -> dict[str, Any] | None:
        return await messages.find_one(
            {"user_id": CAROL.user_id, "caller_number": caller, "emailed_at": {"$ne": None}}
        )

    doc = await eventually(emailed)
    assert doc is not None, "no message stored and emailed for the call"
    # What the caller said, with the silence around it trimmed to half a second each side.
    said_s = wav_duration_s(trim_silence(speech_wav(platform)))
    assert doc["duration_s"] == pytest.approx(said_s, abs=1.0)

    [mail] = [m for m in mails_to(platform, "carol@acme.test") if caller in m["Subject"]]
    [attachment] = [part for part in mail.walk() if part.get_content_maintype() == "audio"]
    audio = attachment.get_payload(decode=True)
    assert isinstance(audio, bytes)
    assert wav_duration_s(audio) == pytest.approx(doc["duration_s"], abs=0.01)

    new = await messages.count_documents({"user_id": CAROL.user_id, "folder": "new"})
    old = await messages.count_documents({"user_id": CAROL.user_id, "folder": "saved"})
    assert await last_mwi(carols_lamp, (True, new, old, 0)) == (True, new, old, 0)


async def test_a_caller_who_presses_hash_then_4_leaves_an_urgent_message(
    platform: LocalPlatform,
    start_phone: StartPhone,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    await start_phone(PhoneKind.NOANSWER, CAROL)
    mailbox_id = f"{TENANT}:{CAROL.user_id}"
    try:
        status, body = await api(
            nc,
            "putVoicemailSettings",
            {"tenant_id": TENANT, "user_id": CAROL.user_id},
            {"email": "carol@acme.test"},
        )
        assert status in (200, 201), body
        greeting_s = sound_seconds(platform, *GREETING)
        listen_ms = round(greeting_s * 1000) + 500
        scenario = keypad_scenario(
            platform,
            "urgent_message.xml",
            [
                ("wait", listen_ms),
                ("speak", 7300),
                ("keys", "#"),  # done: the review menu
                ("wait", 2500),
                ("keys", "4"),  # urgent
                ("wait", 2500),
                ("keys", "1"),  # accept
            ],
        )
        caller = new_caller()
        result = await platform.sipp.call(
            CAROL.number, caller=caller, scenario=scenario, timeout_s=90
        )
        assert result.exit_code == 0, result.output_tail

        async def emailed() -> dict[str, Any] | None:
            return await mongo[DB].messages.find_one(
                {"caller_number": caller, "emailed_at": {"$ne": None}}
            )

        doc = await eventually(emailed)
        assert doc is not None
        assert doc["urgent"] is True
        # "#" ends the recording (the review menu is not recorded), just after the speech.
        said_s = wav_duration_s(trim_silence(speech_wav(platform)))
        assert doc["duration_s"] == pytest.approx(said_s, abs=1.0)
        [mail] = [m for m in mails_to(platform, "carol@acme.test") if caller in m["Subject"]]
        assert mail["Subject"].startswith("URGENT: ")
    finally:
        await mongo[DB].mailboxes.delete_one({"_id": mailbox_id})
