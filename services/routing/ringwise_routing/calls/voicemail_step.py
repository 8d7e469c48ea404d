"""The voicemail step of a call: the caller leaves a message when nobody answered.

Routing drives the media over ARI; the voicemail service decides (over NATS request/reply):
deposit_begin says whether the user has a mailbox, what greeting to play and how long to
record; deposit_complete hands over the finished recording (Asterisk's spool; voicemail
fetches, stores and deletes it). A hang-up during the recording still saves the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol, TypeVar

from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter
from ringwise.directory.v1 import resolve_pb2
from ringwise.voicemail.v1 import deposit_pb2, mailbox_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import (
    AriClient,
    AriError,
    AriEvent,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Dial,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    StasisEnd,
    StasisStart,
    calls,
)
from ringwise_kit.events import to_timestamp
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.cdr import CallRecord
from ringwise_routing.provisioning.edge import PhonesViaEdge

log = get_logger(__name__)

VOICEMAIL_CALLS = Counter(
    "ringwise_routing_voicemail_total", "Unanswered calls offered to voicemail", ["outcome"]
)
BEEP = ("sound:beep",)
SAVED = ("sound:vm-msgsaved", "sound:vm-goodbye")  # "Your message has been saved. Goodbye."
SKIP_GREETING_DIGIT = "#"
MAILBOX_DIGIT = "*"
FINISH_DIGIT = "#"
PROMPT_TIMEOUT_S = 60.0
# After a hang-up, Asterisk closes the file and sends RecordingFinished within moments.
RECORDING_CLOSE_TIMEOUT_S = 3.0
COMPLETE_ATTEMPTS = 5
# After "#": "press 1 to accept, 2 to listen, 3 to re-record" + "4 to mark it urgent".
REVIEW_PROMPT = ("sound:vm-review", "sound:vm-review-urgent")
REVIEW_ACCEPT, REVIEW_LISTEN, REVIEW_RERECORD, REVIEW_URGENT = "1", "2", "3", "4"
REVIEW_KEYS = (REVIEW_ACCEPT, REVIEW_LISTEN, REVIEW_RERECORD, REVIEW_URGENT)
REVIEW_WAIT_S = 5.0

# Dial events that end the ringing of an outgoing leg (the call back).
FINAL_DIALSTATUS = frozenset({"ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL"})

AVAILABILITY = {
    "NOANSWER": deposit_pb2.AVAILABILITY_AVAILABLE,
    "BUSY": deposit_pb2.AVAILABILITY_BUSY,
}
# The plan's greeting name (the availability state's) says more than the dial status.
GREETING_AVAILABILITY = {
    "busy": deposit_pb2.AVAILABILITY_BUSY,
    "holiday": deposit_pb2.AVAILABILITY_EXTENDED_ABSENCE,
    "travelling": deposit_pb2.AVAILABILITY_UNAVAILABLE,
    "unavailable": deposit_pb2.AVAILABILITY_UNAVAILABLE,
}
# Pressed during the greeting or the recording: the caller wants the delegate instead.
BREAKOUT_DIGIT = "0"


class Deposit(Enum):
    NO_MAILBOX = "no_mailbox"  # nothing was played: the caller gets the usual treatment
    TAKEN = "taken"  # greeting played (and a message taken if the mailbox records)
    BREAKOUT = "breakout"  # the caller pressed 0 for the delegate; no message was kept


def availability_for(greeting: str, dialstatus: str) -> deposit_pb2.Availability.ValueType:
    return GREETING_AVAILABILITY.get(
        greeting.lower(), AVAILABILITY.get(dialstatus.upper(), deposit_pb2.AVAILABILITY_UNAVAILABLE)
    )


M = TypeVar("M", bound=Message)
FindUser = Callable[[str], Awaitable[tuple[str, str] | None]]
# (tenant, digits keyed on a phone) -> the id of the tenant's user (by extension) or team
# (by extension or number) they name, if any.
FindInTenant = Callable[[str, str], Awaitable[str | None]]
# The forward asks voicemail for one copy per recipient: a big team takes a while. A timed-out
# forward is asked again once (the copies' ids derive from the annotation: no double copies).
FORWARD_TIMEOUT_S = 10.0
FORWARD_ATTEMPTS = 2


@dataclass(frozen=True)
class ForwardTarget:
    """Whom a forwarded message goes to: a user, or every member of a team."""

    user_id: str = ""
    team_id: str = ""


class Call(Protocol):
    """What the step needs of the call session (session.CallSession)."""

    call_id: str
    caller_id: str
    record: CallRecord
    message_left: bool  # set once a recorded message was handed to voicemail

    async def wait_for(
        self, match: Callable[[AriEvent], bool], timeout_s: float
    ) -> AriEvent | None: ...

    def track_channel(self, channel_id: str) -> None: ...


class VoicemailStep:
    def __init__(
        self,
        nc: NatsClient,
        ari: AriClient,
        caller_gone: type[Exception],
        *,
        timeout_s: float = 1.0,
        find_user: FindUser | None = None,
        find_colleague: FindInTenant | None = None,
        find_team: FindInTenant | None = None,
        trunk_dial: Callable[[str], str] | None = None,
        phones: PhonesViaEdge | None = None,
    ) -> None:
        self._nc = nc
        # Phones dialled through the SIP edge when it has a location service (Kubernetes).
        self._phones = phones or PhonesViaEdge()
        self._ari = ari
        # For "forward to": the user a dialled number reaches (tenant, user), if any...
        self._find_user = find_user
        # ... else the tenant's user whose extension they are, else the tenant's team they name
        # (its extension or number).
        self._find_colleague = find_colleague
        self._find_team = find_team
        # For "call back the sender": the dial string of a PSTN number ("" = no trunk).
        self._trunk_dial = trunk_dial or (lambda number: "")
        # waiting.CallerHungUp: what call.wait_for raises when the caller hangs up.
        self._caller_gone = caller_gone
        self._timeout_s = timeout_s

    async def deposit(
        self,
        call: Call,
        dialstatus: str,
        *,
        mailbox: str = "",
        greeting: str = "",
        breakout: bool = False,
    ) -> Deposit:
        """Take a message if `mailbox` (default: the called user) has one; NO_MAILBOX leaves
        the caller to the usual treatment (nothing was played). `greeting` is the plan's
        greeting name; `breakout`: 0 during the greeting or the recording returns BREAKOUT.
        Raises the session's CallerHungUp when the caller leaves (after the message, if any,
        is handed over)."""
        record = call.record
        mailbox = mailbox or record.user_id
        if not record.tenant_id or not mailbox:
            return Deposit.NO_MAILBOX
        try:
            begin = await bus.request(
                self._nc,
                subjects.VOICEMAIL_DEPOSIT_BEGIN,
                deposit_pb2.DepositBeginRequest(
                    tenant_id=record.tenant_id,
                    user_id=mailbox,
                    call_id=call.call_id,
                    caller_number=record.from_number,
                    availability=availability_for(greeting, dialstatus),
                ),
                deposit_pb2.DepositBeginReply,
                self._timeout_s,
            )
        except Exception as exc:
            # Voicemail down: the caller gets the usual "not answering" rather than silence.
            log.warning("voicemail_unavailable", error=repr(exc))
            VOICEMAIL_CALLS.labels("voicemail_unavailable").inc()
            return Deposit.NO_MAILBOX
        reply = deposit_pb2.DepositBeginReply
        if begin.status not in (reply.STATUS_RECORD, reply.STATUS_GREETING_ONLY):
            VOICEMAIL_CALLS.labels("no_mailbox").inc()
            return Deposit.NO_MAILBOX
        log.info("voicemail_deposit", greeting=begin.greeting, deposit_id=begin.deposit_id)
        await self._ari.answer(call.caller_id)
        keys = Keys(self._ari, call)
        stop_on = (SKIP_GREETING_DIGIT, MAILBOX_DIGIT) + ((BREAKOUT_DIGIT,) if breakout else ())
        pressed = await keys.play(begin.greeting_media, stop_on=stop_on)
        if pressed == MAILBOX_DIGIT:
            # The owner calling their own number from any phone: the mailbox, after the PIN.
            keys.take()
            await self.mailbox(call, keys, record.tenant_id, mailbox)
            return Deposit.TAKEN
        keys.take()
        if pressed == BREAKOUT_DIGIT:
            VOICEMAIL_CALLS.labels("breakout").inc()
            return Deposit.BREAKOUT
        if begin.status == reply.STATUS_GREETING_ONLY:
            VOICEMAIL_CALLS.labels("greeting_only").inc()
            return Deposit.TAKEN
        if not await self._record(call, begin, keys, mailbox, breakout=breakout):
            VOICEMAIL_CALLS.labels("breakout").inc()
            return Deposit.BREAKOUT
        await keys.play(SAVED)
        return Deposit.TAKEN

    async def mailbox(self, call: Call, keys: Keys, tenant_id: str, user_id: str) -> None:
        """PIN, then the messages; wrong PINs are audited and lock the mailbox (voicemail)."""
        session = ""
        login = LOGIN()
        for _ in range(PIN_ATTEMPTS_PER_CALL):
            pin = await keys.number(["sound:vm-password"], max_digits=12)
            login = await _mailbox_request(
                self._nc,
                subjects.VOICEMAIL_MAILBOX_LOGIN,
                mailbox_pb2.MailboxLoginRequest(
                    tenant_id=tenant_id,
                    user_id=user_id,
                    pin=pin,
                    call_id=call.call_id,
                    caller_number=call.record.from_number,
                ),
                LOGIN,
            )
            if login.status == LOGIN.STATUS_OK:
                session = login.session
                break
            await keys.play(["sound:vm-incorrect"])
            if login.status != LOGIN.STATUS_WRONG_PIN:
                break  # locked, or no PIN: no more tries in this call
        log.info("mailbox_login", status=LOGIN.Status.Name(login.status))
        if not session:
            VOICEMAIL_CALLS.labels("mailbox_refused").inc()
            await keys.play(["sound:vm-goodbye"])
            return
        VOICEMAIL_CALLS.labels("mailbox").inc()
        listed = await _mailbox_request(
            self._nc,
            subjects.VOICEMAIL_MAILBOX_LIST,
            mailbox_pb2.MailboxListRequest(
                session=session, folders=[mailbox_pb2.FOLDER_NEW, mailbox_pb2.FOLDER_SAVED]
            ),
            mailbox_pb2.MailboxListReply,
        )
        messages = list(listed.messages)
        await keys.play(_count_prompt(len(messages)), stop_on=MENU_KEYS)
        await PhoneMenu(self, call, keys, session, tenant_id, user_id).run(messages)
        await keys.play(["sound:vm-goodbye"])

    async def record_raw(self, call: Call, name: str, max_seconds: int) -> None:
        """Record the caller until "#", silence or max_seconds (the hang-up propagates)."""
        await self._ari.call(
            calls.record_channel(
                call.caller_id,
                name,
                if_exists="overwrite",
                max_duration_s=max_seconds,
                max_silence_s=5,
                terminate_on=FINISH_DIGIT,
            )
        )
        await call.wait_for(
            lambda e: isinstance(e, RecordingFinished | RecordingFailed)
            and e.recording.name == name,
            max_seconds + 10,
        )

    async def _record(
        self,
        call: Call,
        begin: deposit_pb2.DepositBeginReply,
        keys: Keys,
        mailbox: str,
        *,
        breakout: bool = False,
    ) -> bool:
        """Beep, record, then the review menu: 1 (or nothing) accepts, 2 plays it back,
        3 records again, 4 marks it urgent. A hang-up at any point keeps what was recorded.
        False: the caller pressed 0 for the delegate (the recording is discarded)."""
        urgent = False
        complete = functools.partial(self._complete, call, begin, mailbox=mailbox)
        while True:
            await keys.play(BEEP)
            started, ended, failed, gone, broke_out = await self._take_recording(
                call, begin, breakout=breakout
            )
            if broke_out:
                await complete(started, ended, recorded=False, urgent=False)
                return False
            if gone is not None or failed:
                await complete(started, ended, recorded=not failed, urgent=urgent)
                VOICEMAIL_CALLS.labels("recording_failed" if failed else "recorded").inc()
                if gone is not None:
                    raise gone
                return True
            try:
                choice = await self._review(keys, begin)
                while choice in (REVIEW_LISTEN, REVIEW_URGENT):
                    if choice == REVIEW_URGENT:
                        urgent = True
                        await keys.play(["sound:vm-marked-urgent"])
                    else:
                        await keys.play([f"recording:{begin.recording_name}"])
                    choice = await self._review(keys, begin)
            except self._caller_gone:
                await complete(started, ended, recorded=True, urgent=urgent)
                VOICEMAIL_CALLS.labels("recorded").inc()
                raise
            if choice != REVIEW_RERECORD:
                await complete(started, ended, recorded=True, urgent=urgent)
                VOICEMAIL_CALLS.labels("recorded").inc()
                return True

    async def _review(self, keys: Keys, begin: deposit_pb2.DepositBeginReply) -> str:
        await keys.play(REVIEW_PROMPT, stop_on=REVIEW_KEYS)
        while True:
            key = await keys.key(REVIEW_WAIT_S)
            if key is None or key in REVIEW_KEYS:
                return key or REVIEW_ACCEPT

    async def _take_recording(
        self, call: Call, begin: deposit_pb2.DepositBeginReply, *, breakout: bool = False
    ) -> tuple[datetime, datetime, bool, Exception | None, bool]:
        """(started, ended, failed, the caller's hang-up if they hung up meanwhile, whether
        the caller pressed the breakout digit)."""
        name = begin.recording_name
        started = datetime.now(UTC)
        await self._ari.call(
            calls.record_channel(
                call.caller_id,
                name,
                fmt=begin.recording_format or "wav",
                if_exists="overwrite",
                max_duration_s=begin.max_seconds,
                max_silence_s=begin.max_silence_seconds,
                terminate_on=FINISH_DIGIT,
            )
        )

        def finished(event: AriEvent) -> bool:
            return (
                isinstance(event, RecordingFinished | RecordingFailed)
                and event.recording.name == name
            )

        def broke_out(event: AriEvent) -> bool:
            return (
                breakout
                and isinstance(event, ChannelDtmfReceived)
                and event.channel.id == call.caller_id
                and event.digit == BREAKOUT_DIGIT
            )

        gone: Exception | None = None
        result: AriEvent | None = None
        try:
            result = await call.wait_for(
                lambda e: finished(e) or broke_out(e), begin.max_seconds + 10
            )
            if isinstance(result, ChannelDtmfReceived):
                # ARI ends recordings only on # or *: stop this one and let it go.
                with contextlib.suppress(Exception):
                    await self._ari.call(calls.cancel_recording(name))
                with contextlib.suppress(self._caller_gone):
                    await call.wait_for(finished, RECORDING_CLOSE_TIMEOUT_S)
                return started, datetime.now(UTC), False, None, True
        except self._caller_gone as exc:
            # Hung up while recording: the message still counts. Wait for Asterisk to close
            # the file (later hang-up events of the same call raise again; keep waiting).
            gone = exc
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RECORDING_CLOSE_TIMEOUT_S
            while result is None and loop.time() < deadline:
                with contextlib.suppress(self._caller_gone):
                    result = await call.wait_for(finished, deadline - loop.time())
        ended = result.timestamp if result is not None else datetime.now(UTC)
        return started, ended, isinstance(result, RecordingFailed), gone, False

    async def _complete(
        self,
        call: Call,
        begin: deposit_pb2.DepositBeginReply,
        started: datetime,
        ended: datetime,
        *,
        recorded: bool,
        urgent: bool,
        mailbox: str,
    ) -> None:
        record = call.record
        request = deposit_pb2.DepositCompleteRequest(
            deposit_id=begin.deposit_id,
            tenant_id=record.tenant_id,
            user_id=mailbox,
            call_id=call.call_id,
            recording_name=begin.recording_name if recorded else "",
            duration_ms=max(0, round((ended - started).total_seconds() * 1000)),
            caller_number=record.from_number,
            urgent=urgent,
            started_at=to_timestamp(started),
            recording_format=begin.recording_format or "wav",
            asterisk_instance=self._ari.instance,  # where voicemail fetches the recording
        )
        # The same deposit id every time: voicemail de-duplicates, so retrying is safe.
        for attempt in range(1, COMPLETE_ATTEMPTS + 1):
            try:
                done = await bus.request(
                    self._nc,
                    subjects.VOICEMAIL_DEPOSIT_COMPLETE,
                    request,
                    deposit_pb2.DepositCompleteReply,
                    2.0,
                )
            except Exception as exc:
                log.warning("voicemail_complete_retry", attempt=attempt, error=repr(exc))
                await asyncio.sleep(0.5 * attempt)
                continue
            log.info(
                "voicemail_deposited",
                deposit_id=begin.deposit_id,
                status=deposit_pb2.DepositCompleteReply.Status.Name(done.status),
            )
            if recorded:
                call.message_left = True
            return
        # The recording stays in Asterisk's spool under its deposit name for an operator.
        log.error("voicemail_complete_failed", deposit_id=begin.deposit_id)

    async def forward_target(self, tenant_id: str, keyed: str) -> ForwardTarget | None:
        """Whom digits keyed in the mailbox's forward name in this tenant: the user a number
        reaches, else a user by extension, else a team by its extension or number. None for
        nothing there: no one, a number of another tenant, or a directory that did not
        answer."""
        if not keyed:
            return None
        found = await self._find_user(keyed) if self._find_user is not None else None
        if found is not None:
            tenant, user_id = found
            return ForwardTarget(user_id=user_id) if tenant == tenant_id else None
        if self._find_colleague is not None:
            colleague = await self._find_colleague(tenant_id, keyed)
            if colleague:
                return ForwardTarget(user_id=colleague)
        team_id = await self._find_team(tenant_id, keyed) if self._find_team is not None else None
        return ForwardTarget(team_id=team_id) if team_id else None

    # -- the mailbox's reply and call back (PhoneMenu.advanced) ------------------------------

    async def resolve_user(
        self, req: resolve_pb2.ResolveUserRequest
    ) -> resolve_pb2.ResolveNumberReply | None:
        """The directory's active user, or None (unknown, or the directory did not answer:
        the menu then offers less, it never fails)."""
        try:
            reply = await bus.request(
                self._nc,
                subjects.DIRECTORY_RESOLVE_USER,
                req,
                resolve_pb2.ResolveNumberReply,
                self._timeout_s + 1.0,
            )
        except Exception as exc:
            log.warning("directory_unavailable", error=repr(exc))
            return None
        return reply if reply.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND else None

    async def internal_sender(
        self, tenant_id: str, message: mailbox_pb2.PhoneMessage
    ) -> resolve_pb2.ResolveNumberReply | None:
        """The user of this tenant who left the message: the one voicemail recorded as its
        sender, else the user the caller's number (a DID or an extension) reaches."""
        if message.sender_user_id:
            return await self.resolve_user(
                resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, user_id=message.sender_user_id)
            )
        number = message.caller_number
        if not number:
            return None
        found = await self._find_user(number) if self._find_user is not None else None
        if found is not None:
            if found[0] != tenant_id:
                return None
            return await self.resolve_user(
                resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, user_id=found[1])
            )
        if number.isdigit():
            return await self.resolve_user(
                resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, extension=number)
            )
        return None

    def call_back_target(
        self, sender: resolve_pb2.ResolveNumberReply | None, caller_number: str
    ) -> str:
        """The dial string that reaches the sender ("" when nothing can)."""
        if sender is not None:
            for device in sender.devices:
                if device.kind == "sip" and device.dial_string:
                    return device.dial_string
                if device.kind == "external" and device.number:
                    dial = self._trunk_dial(device.number)
                    if dial:
                        return dial
            return ""
        digits = caller_number.lstrip("+")
        if not digits.isdigit():
            return ""
        return self._trunk_dial(caller_number if caller_number.startswith("+") else f"+{digits}")

    async def call_out(
        self,
        call: Call,
        dial_string: str,
        presenting: resolve_pb2.ResolveNumberReply | None,
    ) -> bool:
        """Dial from the caller's (answered) channel and bridge the two until the far end
        hangs up; False if it was not answered. The caller hanging up raises, as always;
        nothing of the outgoing leg or the bridge is left behind either way."""
        leg_id = f"{call.call_id}-cb-{uuid.uuid4().hex[:8]}"
        bridge_id = f"{leg_id}-bridge"
        call.track_channel(leg_id)
        variables = {}
        if presenting is not None:
            # The far end sees the mailbox owner calling.
            number = presenting.smartnumber or presenting.extension
            if number:
                variables["CALLERID(num)"] = number
            variables["CALLERID(name)"] = presenting.user_name
        bridged = False
        try:
            try:
                await self._ari.call(
                    calls.create_channel(
                        self._ari.app,
                        self._phones.dial_string(dial_string),
                        channel_id=leg_id,
                        app_args=("dialed", call.call_id),
                        originator=call.caller_id,
                        variables=variables,
                    )
                )
            except AriError as exc:
                log.warning("call_back_failed", error=str(exc))
                return False
            entered = await call.wait_for(
                lambda e: isinstance(e, StasisStart) and e.channel.id == leg_id, 5.0
            )
            if entered is None:
                return False
            try:
                await self._ari.dial(leg_id, caller=call.caller_id, timeout_s=CALL_BACK_RING_S)
            except AriError as exc:  # the leg failed at once (unreachable, no such endpoint)
                log.warning("call_back_failed", error=str(exc))
                return False

            def leg_gone(event: AriEvent) -> bool:
                return isinstance(event, CALL_BACK_HANGUPS) and event.channel.id == leg_id

            def dial_result(event: AriEvent) -> bool:
                if isinstance(event, Dial) and event.peer.id == leg_id:
                    return event.dialstatus in FINAL_DIALSTATUS
                return leg_gone(event)

            result = await call.wait_for(dial_result, CALL_BACK_RING_S + 5)
            if not (isinstance(result, Dial) and result.dialstatus == "ANSWER"):
                log.info("call_back_unanswered", status=getattr(result, "dialstatus", None))
                return False
            joined = await self._ari.run_all(
                calls.create_bridge(bridge_id),
                calls.add_to_bridge(bridge_id, [call.caller_id, leg_id]),
            )
            bridged = True
            if any(isinstance(result, AriError) for result in joined):
                log.warning("call_back_not_bridged", errors=[repr(r) for r in joined])
                return False
            VOICEMAIL_CALLS.labels("call_back").inc()
            log.info("call_back_connected")
            while await call.wait_for(leg_gone, 3600) is None:
                pass
            return True
        finally:
            with contextlib.suppress(Exception):
                await self._ari.run_all(
                    calls.hangup(leg_id),
                    *([calls.destroy_bridge(bridge_id)] if bridged else []),
                )

    async def record_through_hangup(
        self, call: Call, name: str, max_seconds: int
    ) -> Exception | None:
        """record_raw, except that a hang-up ends the recording instead of losing it: waits
        for Asterisk to close the file, then returns the hang-up (the caller raises it after
        using the recording)."""
        try:
            await self.record_raw(call, name, max_seconds)
        except self._caller_gone as exc:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RECORDING_CLOSE_TIMEOUT_S
            while loop.time() < deadline:
                with contextlib.suppress(self._caller_gone):
                    closed = await call.wait_for(
                        lambda e: isinstance(e, RecordingFinished | RecordingFailed)
                        and e.recording.name == name,
                        deadline - loop.time(),
                    )
                    if closed is not None:
                        break
            return exc
        return None


# -- the mailbox by phone -------------------------------------------------------------------

# Keys as in Asterisk's Comedian Mail, which callers know.
KEY_REPEAT = "5"
KEY_NEXT = "6"
KEY_PREVIOUS = "4"
KEY_DELETE = "7"
KEY_FORWARD = "8"
KEY_SAVE = "9"
KEY_EXIT = "#"
KEY_OPTIONS = "0"
KEY_URGENT = "1"
KEY_ARCHIVE = "2"
# Comedian Mail's advanced options: 1 reply (internal senders), 2 call back, 3 envelope.
KEY_ADVANCED = "3"
ADVANCED_REPLY, ADVANCED_CALL_BACK, ADVANCED_ENVELOPE = "1", "2", "3"
ADVANCED_KEYS = (ADVANCED_REPLY, ADVANCED_CALL_BACK, ADVANCED_ENVELOPE)
# While a message plays, * goes back and # forward 4 s; it plays on.
SKIP_MS = 4000
PLAYBACK_CONTROLS = {"*": "reverse", "#": "forward"}
MENU_KEYS = (
    KEY_URGENT,
    KEY_ARCHIVE,
    KEY_ADVANCED,
    KEY_REPEAT,
    KEY_NEXT,
    KEY_PREVIOUS,
    KEY_DELETE,
    KEY_FORWARD,
    KEY_SAVE,
    KEY_OPTIONS,
    KEY_EXIT,
)
# Mailbox options: key -> (greeting kind, its "record your ... greeting" prompt).
PLAY_KEYS = tuple(k for k in MENU_KEYS if k not in PLAYBACK_CONTROLS)
GREETING_KEYS = {
    "1": ("permanent", "sound:vm-rec-unv"),
    "2": ("busy", "sound:vm-rec-busy"),
    "3": ("name", "sound:vm-rec-name"),
    "4": ("temporary", "sound:vm-rec-temp"),
}
KEY_NEW_PIN = "5"
OPTION_KEYS = (*GREETING_KEYS, KEY_NEW_PIN, "*", "#")
GREETING_REVIEW_KEYS = ("1", "2", "3")
GREETING_MAX_S = 120
PIN_ATTEMPTS_PER_CALL = 3
LOGIN = mailbox_pb2.MailboxLoginReply
ACTION = mailbox_pb2.MailboxActionRequest
KEY_TIMEOUT_S = 8.0
BETWEEN_KEYS_S = 4.0
ANNOTATION_MAX_S = 60
REPLY_MAX_S = 180
CALL_BACK_RING_S = 30
CALL_BACK_HANGUPS = (ChannelHangupRequest, StasisEnd, ChannelDestroyed)


class Keys:
    """DTMF of one caller: digits pressed during a prompt stop it (barge-in) and are kept
    for the next read, so a fast caller never loses a key."""

    def __init__(self, ari: AriClient, call: Call) -> None:
        self._ari = ari
        self._call = call
        self._buffer: list[str] = []
        self._plays = 0

    def _is_key(self, event: AriEvent) -> bool:
        return isinstance(event, ChannelDtmfReceived) and event.channel.id == self._call.caller_id

    async def play(self, media: Sequence[str], stop_on: Sequence[str] | None = None) -> str | None:
        """Play; a key (any, or one of stop_on) stops it. Returns the key that did."""
        if self._buffer:
            return self._buffer[0]
        if not media:
            return None
        self._plays += 1
        playback_id = f"{self._call.call_id}-vm{self._plays}"
        await self._ari.play(self._call.caller_id, list(media), playback_id)
        while True:
            event = await self._call.wait_for(
                lambda e: self._is_key(e)
                or (isinstance(e, PlaybackFinished) and e.playback.id == playback_id),
                PROMPT_TIMEOUT_S,
            )
            if not isinstance(event, ChannelDtmfReceived):
                return None
            if stop_on is None or event.digit in stop_on:
                self._buffer.append(event.digit)
                await self._ari.stop_playback(playback_id)
                return event.digit

    async def play_controlled(
        self, media: Sequence[str], controls: dict[str, str], stop_on: Sequence[str]
    ) -> str | None:
        """Play a message: control keys move it (ARI playback control) and it plays on;
        a stop_on key stops it and is kept for the next read."""
        if self._buffer:
            return self._buffer[0]
        self._plays += 1
        playback_id = f"{self._call.call_id}-vm{self._plays}"
        await self._ari.play(self._call.caller_id, list(media), playback_id, skipms=SKIP_MS)
        while True:
            event = await self._call.wait_for(
                lambda e: self._is_key(e)
                or (isinstance(e, PlaybackFinished) and e.playback.id == playback_id),
                PROMPT_TIMEOUT_S + 600,
            )
            if not isinstance(event, ChannelDtmfReceived):
                return None
            if event.digit in controls:
                await self._ari.control_playback(playback_id, controls[event.digit])
            elif event.digit in stop_on:
                self._buffer.append(event.digit)
                await self._ari.stop_playback(playback_id)
                return event.digit

    def take(self) -> str | None:
        return self._buffer.pop(0) if self._buffer else None

    async def key(self, timeout_s: float = KEY_TIMEOUT_S) -> str | None:
        if self._buffer:
            return self._buffer.pop(0)
        event = await self._call.wait_for(self._is_key, timeout_s)
        return event.digit if isinstance(event, ChannelDtmfReceived) else None

    async def number(self, prompt: Sequence[str], max_digits: int = 20) -> str:
        """Digits up to "#" (or a pause, or max_digits)."""
        await self.play(prompt)
        digits = ""
        timeout = KEY_TIMEOUT_S
        while len(digits) < max_digits:
            key = await self.key(timeout)
            if key is None or key == "#":
                break
            digits += key
            timeout = BETWEEN_KEYS_S
        return digits


def _count_prompt(count: int) -> list[str]:
    # "You have <n> messages" from the core sounds.
    return ["sound:vm-youhave", f"number:{count}", "sound:vm-messages"]


async def _mailbox_request(
    nc: NatsClient, subject: str, req: Message, reply: type[M], timeout_s: float = 2.0
) -> M:
    return await bus.request(nc, subject, req, reply, timeout_s)


class PhoneMenu:
    """One logged-in walk through the messages (play, repeat, previous, next, save, delete,
    forward with an annotation; reply, call back and envelope under 3)."""

    def __init__(
        self,
        step: VoicemailStep,
        call: Call,
        keys: Keys,
        session: str,
        tenant_id: str,
        owner_id: str = "",
    ) -> None:
        self.step = step
        self.call = call
        self.keys = keys
        self.session = session
        self.tenant_id = tenant_id
        self.owner_id = owner_id  # the mailbox's user

    async def act(
        self,
        message: mailbox_pb2.PhoneMessage | None,
        action: mailbox_pb2.MailboxActionRequest.Action.ValueType,
        timeout_s: float = 2.0,
        **extra: str,
    ) -> mailbox_pb2.MailboxActionReply:
        return await _mailbox_request(
            self.step._nc,
            subjects.VOICEMAIL_MAILBOX_ACTION,
            mailbox_pb2.MailboxActionRequest(
                session=self.session,
                message_id=message.message_id if message else "",
                action=action,
                # Greetings and annotations are recorded here: voicemail fetches them there.
                asterisk_instance=self.step._ari.instance,
                **extra,
            ),
            mailbox_pb2.MailboxActionReply,
            timeout_s,
        )

    async def run(self, messages: list[mailbox_pb2.PhoneMessage]) -> None:
        index = 0
        replay = True
        while 0 <= index < len(messages):
            message = messages[index]
            if replay:
                await self.keys.play_controlled([message.media], PLAYBACK_CONTROLS, PLAY_KEYS)
            replay = True
            key = await self.keys.key()
            if key in (None, KEY_NEXT):
                index += 1
            elif key == KEY_REPEAT:
                continue
            elif key == KEY_PREVIOUS:
                index = max(0, index - 1)
            elif key == KEY_ADVANCED:
                await self.advanced(message)
                replay = False
            elif key == KEY_URGENT:
                await self.act(message, ACTION.ACTION_MARK_URGENT)
                await self.keys.play(["sound:vm-marked-urgent"], stop_on=MENU_KEYS)
                replay = False
            elif key == KEY_ARCHIVE:
                await self.act(message, ACTION.ACTION_ARCHIVE)
                await self.keys.play(["sound:vm-savedto", "sound:vm-Old"], stop_on=MENU_KEYS)
                index += 1
            elif key == KEY_SAVE:
                await self.act(message, ACTION.ACTION_SAVE)
                await self.keys.play(["sound:vm-saved"])
                index += 1
            elif key == KEY_DELETE:
                await self.act(message, ACTION.ACTION_DELETE)
                await self.keys.play(["sound:vm-deleted"])
                index += 1
            elif key == KEY_FORWARD:
                await self.forward(message)
                index += 1
            elif key == KEY_OPTIONS:
                await self.options()
            elif key == KEY_EXIT:
                return
        await self.keys.play(["sound:vm-nomore"], stop_on=(KEY_OPTIONS,))
        if await self.keys.key(BETWEEN_KEYS_S) == KEY_OPTIONS:
            await self.options()

    async def options(self) -> None:
        """Mailbox options (Comedian Mail keys): 1 unavailable (permanent) greeting, 2 busy,
        3 name, 4 temporary (for today), 5 PIN; anything else returns."""
        while True:
            await self.keys.play(["sound:vm-options"], stop_on=OPTION_KEYS)
            key = await self.keys.key()
            if key in GREETING_KEYS:
                kind, prompt = GREETING_KEYS[key]
                await self.record_greeting(kind, prompt)
            elif key == KEY_NEW_PIN:
                await self.change_pin()
            else:
                return

    async def record_greeting(self, kind: str, prompt: str) -> None:
        name = f"vm-{subjects.tenant_token(self.tenant_id)}-greet-{uuid.uuid4().hex}"
        choice = REVIEW_RERECORD
        while choice == REVIEW_RERECORD:
            await self.keys.play([prompt])
            await self.keys.play(BEEP)
            await self.step.record_raw(self.call, name, GREETING_MAX_S)
            choice = REVIEW_LISTEN
            while choice == REVIEW_LISTEN:
                await self.keys.play(["sound:vm-review"], stop_on=GREETING_REVIEW_KEYS)
                choice = await self.keys.key(REVIEW_WAIT_S) or REVIEW_ACCEPT
                if choice == REVIEW_LISTEN:
                    await self.keys.play([f"recording:{name}"])
        done = await self.act(None, ACTION.ACTION_SET_GREETING, greeting_kind=kind, recording=name)
        ok = done.status == mailbox_pb2.MailboxActionReply.STATUS_DONE
        await self.keys.play(["sound:vm-msgsaved" if ok else "sound:vm-sorry"])

    async def change_pin(self) -> None:
        new = await self.keys.number(["sound:vm-newpassword"], max_digits=12)
        again = await self.keys.number(["sound:vm-reenterpassword"], max_digits=12)
        if new != again:
            await self.keys.play(["sound:vm-mismatch"])
            return
        done = await self.act(None, ACTION.ACTION_SET_PIN, new_pin=new)
        ok = done.status == mailbox_pb2.MailboxActionReply.STATUS_DONE
        await self.keys.play(["sound:vm-passchanged" if ok else "sound:vm-invalid-password"])

    async def forward(self, message: mailbox_pb2.PhoneMessage) -> None:
        """To the user a number or extension reaches, or to every member of a team (its
        extension or number): the caller records an introduction first."""
        keyed = await self.keys.number(["sound:vm-extension"])
        target = await self.step.forward_target(self.tenant_id, keyed)
        if target is None:
            await self.keys.play(["sound:vm-sorry"])
            return
        annotation = f"vm-{subjects.tenant_token(self.tenant_id)}-fwd-{uuid.uuid4().hex}"
        await self.keys.play(BEEP)
        await self.step.record_raw(self.call, annotation, ANNOTATION_MAX_S)
        ok = False
        for attempt in range(1, FORWARD_ATTEMPTS + 1):
            try:
                done = await self.act(
                    message,
                    mailbox_pb2.MailboxActionRequest.ACTION_FORWARD,
                    timeout_s=FORWARD_TIMEOUT_S,
                    forward_to_user_id=target.user_id,
                    forward_to_team_id=target.team_id,
                    annotation_recording=annotation,
                )
                ok = done.status == mailbox_pb2.MailboxActionReply.STATUS_DONE
                break
            except TimeoutError:  # nats' too: the same request again is safe
                log.warning("mailbox_forward_timed_out", attempt=attempt)
            except Exception as exc:  # voicemail or the directory refused: say so
                log.warning("mailbox_forward_failed", error=repr(exc))
                break
        log.info("mailbox_forward", team_id=target.team_id or None, forwarded=ok)
        await self.keys.play(["sound:vm-msgforwarded" if ok else "sound:vm-sorry"])

    # -- advanced options: reply, call back, envelope ------------------------------------------

    async def advanced(self, message: mailbox_pb2.PhoneMessage) -> None:
        """3 from the message menu (Comedian Mail's advanced options): 1 reply (offered only
        when the sender is a user of the tenant), 2 call the sender back, 3 the envelope.
        Anything else returns to the message menu."""
        sender = await self.step.internal_sender(self.tenant_id, message)
        prompt = (["sound:vm-toreply"] if sender else []) + [
            "sound:vm-tocallback",
            "sound:vm-tohearenv",
        ]
        await self.keys.play(prompt, stop_on=ADVANCED_KEYS)
        key = await self.keys.key()
        if key == ADVANCED_REPLY and sender is not None:
            await self.reply(message)
        elif key == ADVANCED_CALL_BACK:
            await self.call_back(message, sender)
        elif key == ADVANCED_ENVELOPE:
            await self.keys.play(list(message.envelope), stop_on=MENU_KEYS)

    async def reply(self, message: mailbox_pb2.PhoneMessage) -> None:
        """Record an answer (beep, "#" or a hang-up ends it) that voicemail deposits in the
        sender's mailbox."""
        name = f"vm-{subjects.tenant_token(self.tenant_id)}-reply-{uuid.uuid4().hex}"
        await self.keys.play(BEEP)
        gone = await self.step.record_through_hangup(self.call, name, REPLY_MAX_S)
        try:
            done = await self.act(message, ACTION.ACTION_REPLY, recording=name)
            ok = done.status == mailbox_pb2.MailboxActionReply.STATUS_DONE
        except Exception as exc:  # voicemail or the directory did not answer: say so
            log.warning("mailbox_reply_failed", error=repr(exc))
            ok = False
        if gone is not None:
            raise gone
        await self.keys.play(["sound:vm-msgsaved" if ok else "sound:vm-sorry"])

    async def call_back(
        self,
        message: mailbox_pb2.PhoneMessage,
        sender: resolve_pb2.ResolveNumberReply | None,
    ) -> None:
        """Call the sender from this channel and bridge the two; back to the menu when they
        hang up. A user: their first reachable device; anyone else: their number through
        the PSTN trunk. Nothing to dial: "cannot complete as dialed"."""
        dial_string = self.step.call_back_target(sender, message.caller_number)
        if not dial_string:
            await self.keys.play(["sound:cannot-complete-as-dialed"])
            return
        await self.keys.play(["sound:pls-hold-while-try"])
        owner = await self.step.resolve_user(
            resolve_pb2.ResolveUserRequest(tenant_id=self.tenant_id, user_id=self.owner_id)
        )
        if not await self.step.call_out(self.call, dial_string, owner):
            await self.keys.play(["sound:vm-sorry"])
