"""The mailbox by phone, walked by DTMF (RFC 4733 from sipp pcaps) on real Asterisk: the owner
calls their own number, presses * during the greeting, enters the PIN, then saves, deletes
and forwards (with a spoken introduction) their messages to a colleague or to a team, calls a
sender back and replies to one; wrong PINs lock the mailbox."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.voicemail.v1 import alerts_pb2, deposit_pb2, mailbox_pb2
from ringwise_dev.fixture import ALICE, BOB, CAROL, DAVE, TENANT
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippPhone
from ringwise_dev.testing import StartPhone, new_caller
from ringwise_dev.voicemail_testing import (
    Step,
    api,
    eventually,
    keypad_scenario,
    last_mwi,
    mails_to,
    place_recording,
    recording_dir,
    sound_seconds,
    tone_wav,
)
from ringwise_kit import bus, subjects
from ringwise_kit.events import to_timestamp

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DB = "ringwise_voicemail"
PIN = "4712"
PCAP_SECONDS = 7.05  # sipp's g711a.pcap


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "voicemail-ivr-e2e")
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
async def lamp(platform: LocalPlatform) -> AsyncIterator[SippPhone]:
    phone = await platform.sipp.start_phone(PhoneKind.MWI, platform.ports.phones + 31)
    yield phone
    await phone.stop()


async def mailbox(nc: NatsClient, user_id: str, **settings: Any) -> None:
    path = {"tenant_id": TENANT, "user_id": user_id}
    status, reply = await api(
        nc, "putVoicemailSettings", path, {"email": f"{user_id}@acme.test", **settings}
    )
    assert status in (200, 201), reply
    status, reply = await api(nc, "setVoicemailPin", path, {"pin": PIN})
    assert status == 204, reply


async def leave(
    platform: LocalPlatform,
    nc: NatsClient,
    user_id: str,
    seconds: float,
    caller_number: str = "+441632960009",
) -> str:
    """A message deposited the way routing does it (recording in Asterisk's spool)."""
    begun = await bus.request(
        nc,
        subjects.VOICEMAIL_DEPOSIT_BEGIN,
        deposit_pb2.DepositBeginRequest(tenant_id=TENANT, user_id=user_id, call_id="ivr-setup"),
        deposit_pb2.DepositBeginReply,
    )
    place_recording(platform, begun.recording_name, tone_wav(seconds))
    done = await bus.request(
        nc,
        subjects.VOICEMAIL_DEPOSIT_COMPLETE,
        deposit_pb2.DepositCompleteRequest(
            deposit_id=begun.deposit_id,
            tenant_id=TENANT,
            user_id=user_id,
            recording_name=begun.recording_name,
            duration_ms=round(seconds * 1000),
            caller_number=caller_number,
            started_at=to_timestamp(datetime.now(UTC)),
        ),
        deposit_pb2.DepositCompleteReply,
    )
    assert done.status == deposit_pb2.DepositCompleteReply.STATUS_ACCEPTED
    return done.message_id


async def test_the_owner_plays_saves_deletes_and_forwards_messages_by_phone(
    platform: LocalPlatform,
    start_phone: StartPhone,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    lamp: SippPhone,
) -> None:
    await start_phone(PhoneKind.NOANSWER, CAROL)
    messages = mongo[DB].messages
    try:
        await mailbox(nc, CAROL.user_id, mwi_targets=[lamp.uri])
        await mailbox(nc, ALICE.user_id)
        await messages.delete_many({"user_id": {"$in": [CAROL.user_id, ALICE.user_id]}})
        first = await leave(platform, nc, CAROL.user_id, 3.0)
        second = await leave(platform, nc, CAROL.user_id, 3.0)
        third = await leave(platform, nc, CAROL.user_id, 3.0)

        async def all_stored() -> bool:
            return await messages.count_documents({"user_id": CAROL.user_id}) == 3

        assert await eventually(all_stored)
        scenario = keypad_scenario(
            platform,
            "ivr_walk.xml",
            [
                ("wait", 1500),
                ("keys", "*"),  # during the greeting: my mailbox
                ("wait", 2000),
                ("keys", PIN + "#"),
                ("wait", 4000),  # "you have 3 messages", then the first plays
                ("keys", "9"),  # save
                ("wait", 2500),
                ("keys", "7"),  # delete the second
                ("wait", 2500),
                ("keys", "8"),  # forward the third...
                ("wait", 2000),
                ("keys", ALICE.number.lstrip("+") + "#"),  # ...to Alice's number
                ("wait", 1500),  # beep
                ("speak", 7300),  # the introduction
                ("keys", "#"),
            ],
        )
        result = await platform.sipp.call(
            CAROL.number, caller=new_caller(), scenario=scenario, timeout_s=120
        )
        assert result.exit_code == 0, result.output_tail

        assert (await messages.find_one({"_id": first}) or {}).get("folder") == "saved"
        assert await messages.find_one({"_id": second}) is None
        assert (await messages.find_one({"_id": third}) or {}).get("folder") == "new"

        async def forwarded() -> dict[str, Any] | None:
            return await messages.find_one({"user_id": ALICE.user_id, "emailed_at": {"$ne": None}})

        doc = await eventually(forwarded)
        assert doc is not None, "nothing was forwarded to Alice"
        assert doc["caller_name"] == f"forwarded by {CAROL.user_id}"
        # The spoken introduction (about 7 s) comes before the 3 s message.
        assert doc["duration_s"] == pytest.approx(3.0 + 7.3, abs=1.5)
        assert [m for m in mails_to(platform, "alice@acme.test") if doc["_id"] in m["Message-ID"]]
        assert await last_mwi(lamp, (True, 1, 1, 0)) == (True, 1, 1, 0)
    finally:
        await mongo[DB].mailboxes.delete_many(
            {"_id": {"$in": [f"{TENANT}:{CAROL.user_id}", f"{TENANT}:{ALICE.user_id}"]}}
        )


async def test_the_owner_forwards_a_message_with_an_introduction_to_a_team_by_its_extension(
    platform: LocalPlatform,
    start_phone: StartPhone,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    """Carol keys the team's extension: Alice and Bob (members with a mailbox) each get the
    introduction then the message; Carol, a member too, and Dave, without a mailbox, none."""
    await start_phone(PhoneKind.NOANSWER, CAROL)
    messages = mongo[DB].messages
    members = [ALICE.user_id, BOB.user_id, CAROL.user_id, DAVE.user_id]
    extension = f"7{secrets.randbelow(1000):03d}"
    status, team = await api(
        nc,
        "createTeam",
        {"tenant_id": TENANT},
        {
            "name": "Forward to the team",
            "extension": extension,
            "ring_strategy": "simultaneous",
            "members": members,
        },
        service="directory",
    )
    assert status == 201, team
    try:
        for person in (CAROL, ALICE, BOB):
            await mailbox(nc, person.user_id)
        await mongo[DB].mailboxes.delete_one({"_id": f"{TENANT}:{DAVE.user_id}"})
        await messages.delete_many({"user_id": {"$in": members}})
        message_id = await leave(platform, nc, CAROL.user_id, 3.0)

        async def stored() -> bool:
            return await messages.count_documents({"user_id": CAROL.user_id}) == 1

        assert await eventually(stored)
        scenario = keypad_scenario(
            platform,
            "ivr_team_forward.xml",
            [
                ("wait", 1500),
                ("keys", "*"),  # during the greeting: my mailbox
                ("wait", 2000),
                ("keys", PIN + "#"),
                ("wait", 4000),  # "you have 1 message", then it plays
                ("keys", "8"),  # forward it...
                ("wait", 2000),
                ("keys", extension + "#"),  # ...to the team's extension
                ("wait", 1500),  # beep
                ("speak", 7300),  # the introduction
                ("keys", "#"),
            ],
        )
        result = await platform.sipp.call(
            CAROL.number, caller=new_caller(), scenario=scenario, timeout_s=120
        )
        assert result.exit_code == 0, result.output_tail

        async def forwarded() -> list[dict[str, Any]]:
            found = await messages.find(
                {"user_id": {"$in": members}, "_id": {"$ne": message_id}}
            ).to_list()
            emailed = [d for d in found if d.get("emailed_at") is not None]
            return found if len(emailed) == 2 else []

        copies = await eventually(forwarded)
        assert sorted(d["user_id"] for d in copies) == [ALICE.user_id, BOB.user_id]
        for copy in copies:
            assert copy["caller_name"] == f"forwarded by {CAROL.user_id}"
            assert copy["caller_number"] == "+441632960009"  # the message's caller
            # The spoken introduction (about 7 s) comes before the 3 s message.
            assert copy["duration_s"] == pytest.approx(3.0 + 7.3, abs=1.5)
            inbox = mails_to(platform, f"{copy['user_id']}@acme.test")
            assert [m for m in inbox if copy["_id"] in m["Message-ID"]]
        # The forwarder kept her message and got no copy; nothing is left of the introduction.
        owned = await messages.find({"user_id": CAROL.user_id}).to_list()
        assert [d["_id"] for d in owned] == [message_id]
        assert not list(recording_dir(platform).glob(f"vm-{TENANT}-fwd-*"))
    finally:
        await api(
            nc,
            "deleteTeam",
            {"tenant_id": TENANT, "team_id": team["team_id"]},
            service="directory",
        )
        await mongo[DB].mailboxes.delete_many(
            {"_id": {"$in": [f"{TENANT}:{p.user_id}" for p in (CAROL, ALICE, BOB)]}}
        )


async def test_five_wrong_pins_over_two_calls_lock_the_mailbox_with_an_audit_entry(
    platform: LocalPlatform,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    try:
        await mailbox(nc, DAVE.user_id)
        wrong: list[Step] = [("keys", "*"), ("wait", 2000)]
        for _ in range(3):
            wrong += [("keys", "9999#"), ("wait", 3000)]
        first = keypad_scenario(platform, "ivr_wrong3.xml", [("wait", 1500), *wrong])
        result = await platform.sipp.call(
            DAVE.number, caller=new_caller(), scenario=first, timeout_s=90
        )
        assert result.exit_code == 0, result.output_tail
        state = await mongo[DB].mailboxes.find_one({"_id": f"{TENANT}:{DAVE.user_id}"})
        assert state is not None and state["lock"]["failures"] == 3

        second = keypad_scenario(platform, "ivr_wrong2.xml", [("wait", 1500), *wrong[:6]])
        result = await platform.sipp.call(
            DAVE.number, caller=new_caller(), scenario=second, timeout_s=90
        )
        assert result.exit_code == 0, result.output_tail

        # The right PIN is refused now, until the lock runs out.
        login = await bus.request(
            nc,
            subjects.VOICEMAIL_MAILBOX_LOGIN,
            mailbox_pb2.MailboxLoginRequest(tenant_id=TENANT, user_id=DAVE.user_id, pin=PIN),
            mailbox_pb2.MailboxLoginReply,
        )
        assert login.status == mailbox_pb2.MailboxLoginReply.STATUS_LOCKED
        assert 14 * 60 < login.retry_after_s <= 15 * 60
        audit = [
            a["what"]
            async for a in mongo[DB].audit.find({"tenant_id": TENANT, "user_id": DAVE.user_id})
        ]
        assert any(a.startswith("mailbox locked after 5 wrong PINs") for a in audit), audit
        assert "login refused: mailbox locked" in audit

        js = nc.jetstream()
        subject = subjects.voicemail_event(TENANT, subjects.VOICEMAIL_MAILBOX_LOCKED)
        sub = await js.subscribe(subject, ordered_consumer=True)
        event = alerts_pb2.MailboxLocked()
        event.ParseFromString((await sub.next_msg(timeout=5)).data)
        await sub.unsubscribe()
        assert event.user_id == DAVE.user_id and event.failures == 5
    finally:
        await mongo[DB].mailboxes.delete_one({"_id": f"{TENANT}:{DAVE.user_id}"})


async def test_the_owner_records_a_greeting_and_changes_the_pin_by_phone(
    platform: LocalPlatform,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    mailbox_id = f"{TENANT}:{DAVE.user_id}"
    try:
        await mongo[DB].mailboxes.delete_one({"_id": mailbox_id})
        await mailbox(nc, DAVE.user_id)
        scenario = keypad_scenario(
            platform,
            "ivr_options.xml",
            [
                ("wait", 1500),
                ("keys", "*"),
                ("wait", 2000),
                ("keys", PIN + "#"),
                ("wait", 3000),  # "you have 0 messages", "no more messages"...
                ("keys", "0"),  # mailbox options
                ("wait", 2000),
                ("keys", "1"),  # record my (unavailable) greeting
                ("wait", 6500),  # "record your unavailable message", beep
                ("speak", 7300),
                ("keys", "#"),
                ("wait", 2000),
                ("keys", "1"),  # accept it
                ("wait", 4000),  # "message saved", the options again
                ("keys", "5"),  # new PIN
                ("wait", 1500),
                ("keys", "8642#"),
                ("wait", 1500),
                ("keys", "8642#"),
                ("wait", 4000),  # "password changed", the options again
                ("keys", "#"),
            ],
        )
        result = await platform.sipp.call(
            DAVE.number, caller=new_caller(), scenario=scenario, timeout_s=120
        )
        assert result.exit_code == 0, result.output_tail

        status, settings = await api(
            nc, "getVoicemailSettings", {"tenant_id": TENANT, "user_id": DAVE.user_id}
        )
        assert status == 200 and settings["greetings"] == ["permanent"]
        begun = await bus.request(
            nc,
            subjects.VOICEMAIL_DEPOSIT_BEGIN,
            deposit_pb2.DepositBeginRequest(tenant_id=TENANT, user_id=DAVE.user_id),
            deposit_pb2.DepositBeginReply,
        )
        assert begun.greeting == "permanent greeting"
        assert "/greetings/permanent-" in begun.greeting_media[0]

        async def login(pin: str) -> int:
            reply = await bus.request(
                nc,
                subjects.VOICEMAIL_MAILBOX_LOGIN,
                mailbox_pb2.MailboxLoginRequest(tenant_id=TENANT, user_id=DAVE.user_id, pin=pin),
                mailbox_pb2.MailboxLoginReply,
            )
            return reply.status

        assert await login("8642") == mailbox_pb2.MailboxLoginReply.STATUS_OK
        assert await login(PIN) == mailbox_pb2.MailboxLoginReply.STATUS_WRONG_PIN
        changes = [
            a.get("channel")
            async for a in mongo[DB].audit.find(
                {"tenant_id": TENANT, "user_id": DAVE.user_id, "what": "pin changed"}
            )
        ]
        assert "phone" in changes
    finally:
        await mongo[DB].mailboxes.delete_one({"_id": mailbox_id})


async def test_envelope_rewind_forward_urgent_and_archive_by_phone(
    platform: LocalPlatform,
    start_phone: StartPhone,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    await start_phone(PhoneKind.NOANSWER, CAROL)
    messages = mongo[DB].messages
    try:
        await mailbox(nc, CAROL.user_id)
        await messages.delete_many({"user_id": CAROL.user_id})
        first = await leave(platform, nc, CAROL.user_id, 3.0)
        second = await leave(platform, nc, CAROL.user_id, 3.0)

        async def both_stored() -> bool:
            return await messages.count_documents({"user_id": CAROL.user_id}) == 2

        assert await eventually(both_stored)
        log_before = platform.asterisk.messages_log_path.stat().st_size
        scenario = keypad_scenario(
            platform,
            "ivr_envelope.xml",
            [
                ("wait", 1500),
                ("keys", "*"),
                ("wait", 2000),
                ("keys", PIN + "#"),
                ("wait", 3000),  # "you have 2 messages"; the first starts
                ("keys", "*"),  # back 4 s (it plays on)
                ("keys", "#"),  # on 4 s: past its end
                ("wait", 1500),
                ("keys", "3"),  # the advanced options...
                ("wait", 1000),
                ("keys", "3"),  # ...the envelope
                ("wait", 2500),
                ("keys", "1"),  # urgent
                ("wait", 2500),
                ("keys", "2"),  # archive; the second message plays
                ("wait", 6000),
                ("keys", "#"),  # leave
            ],
        )
        result = await platform.sipp.call(
            CAROL.number, caller=new_caller(), scenario=scenario, timeout_s=90
        )
        assert result.exit_code == 0, result.output_tail

        archived = await messages.find_one({"_id": first})
        assert archived is not None
        assert archived["folder"] == "archived" and archived["urgent"] is True
        untouched = await messages.find_one({"_id": second})
        assert untouched is not None
        assert untouched["folder"] == "new" and untouched["urgent"] is False
        with platform.asterisk.messages_log_path.open() as log:
            log.seek(log_before)
            played = log.read()
        assert "Playing 'vm-received." in played
        assert "Playing 'digits/mon-" in played
    finally:
        await mongo[DB].mailboxes.delete_one({"_id": f"{TENANT}:{CAROL.user_id}"})


async def test_the_owner_calls_a_colleague_back_and_replies_and_cannot_call_a_withheld_number(
    platform: LocalPlatform,
    start_phone: StartPhone,
    nc: NatsClient,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    await start_phone(PhoneKind.NOANSWER, CAROL)
    alices_desk = await start_phone(PhoneKind.ANSWER_AND_HANGUP, ALICE, ring_ms=500, hold_ms=2000)
    messages = mongo[DB].messages
    try:
        await mailbox(nc, CAROL.user_id)
        await mailbox(nc, ALICE.user_id)
        await messages.delete_many({"user_id": {"$in": [CAROL.user_id, ALICE.user_id]}})
        # Alice called Carol from her own number (a colleague); then a withheld caller.
        from_alice = await leave(platform, nc, CAROL.user_id, 3.0, caller_number=ALICE.number)
        withheld = await leave(platform, nc, CAROL.user_id, 3.0, caller_number="anonymous")

        async def both_stored() -> bool:
            return await messages.count_documents({"user_id": CAROL.user_id}) == 2

        assert await eventually(both_stored)
        # From "2" to Alice's hang-up: "please hold", her phone rings 0.5 s, 2 s of talk.
        call_back_ms = round((sound_seconds(platform, "pls-hold-while-try") + 2.5) * 1000)
        log_before = platform.asterisk.messages_log_path.stat().st_size
        scenario = keypad_scenario(
            platform,
            "ivr_call_back_reply.xml",
            [
                ("wait", 1500),
                ("keys", "*"),
                ("wait", 2000),
                ("keys", PIN + "#"),
                ("wait", 3000),  # "you have 2 messages"; Alice's starts
                ("keys", "3"),  # advanced options: 1 reply, 2 call back, 3 envelope
                ("wait", 1000),
                ("keys", "2"),  # call Alice back; bridged until she hangs up
                ("wait", call_back_ms + 2500),
                ("keys", "3"),
                ("wait", 1000),
                ("keys", "1"),  # reply to Alice
                ("wait", 800),  # the beep
                ("speak", 7300),
                ("keys", "#"),
                ("wait", 3000),  # "message saved"
                ("keys", "6"),  # the withheld caller's message
                ("wait", 1000),
                ("keys", "3"),
                ("wait", 1000),
                ("keys", "2"),  # call back: no number to call
                ("wait", 3500),  # "cannot complete as dialed", back to the menu
                ("keys", "9"),  # save it
            ],
        )
        result = await platform.sipp.call(
            CAROL.number, caller=new_caller(), scenario=scenario, timeout_s=150
        )
        assert result.exit_code == 0, result.output_tail

        # The call back rang Alice's desk phone, she answered, and she ended it.
        calls = await alices_desk.wait_calls(1)
        [leg] = [c for c in calls if c.invite_at is not None]
        assert leg.answered and leg.sent_bye

        async def replied() -> dict[str, Any] | None:
            return await messages.find_one({"user_id": ALICE.user_id, "emailed_at": {"$ne": None}})

        reply = await eventually(replied)
        assert reply is not None, "the reply never reached Alice's mailbox"
        assert (reply["sender_user_id"], reply["caller_name"]) == (CAROL.user_id, CAROL.name)
        assert reply["duration_s"] == pytest.approx(PCAP_SECONDS, abs=1.2)
        assert [m for m in mails_to(platform, "alice@acme.test") if reply["_id"] in m["Message-ID"]]

        assert (await messages.find_one({"_id": from_alice}) or {}).get("folder") == "new"
        assert (await messages.find_one({"_id": withheld}) or {}).get("folder") == "saved"
        with platform.asterisk.messages_log_path.open() as log:
            log.seek(log_before)
            played = log.read()
        assert "Playing 'pls-hold-while-try." in played
        # Alice's options began with "to reply" (both times the key cut them short there);
        # the withheld caller's began with "to call back": no reply offered.
        assert played.count("Playing 'vm-toreply.") == 2
        assert played.count("Playing 'vm-tocallback.") == 1
        assert "Playing 'cannot-complete-as-dialed." in played
    finally:
        await mongo[DB].mailboxes.delete_many(
            {"_id": {"$in": [f"{TENANT}:{CAROL.user_id}", f"{TENANT}:{ALICE.user_id}"]}}
        )
