"""The mailbox by phone (routing runs the IVR over ARI): PIN login with lockout and audit,
the messages to play, and what the user does with each (save, delete, archive, urgent,
forward with a recorded annotation to a user or a team, a recorded reply to an internal
sender)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from ringwise.events.v1 import call_pb2
from ringwise.voicemail.v1 import alerts_pb2, mailbox_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import AriNotFound
from ringwise_kit.events import to_timestamp
from ringwise_kit.logs import get_logger

from ringwise_voicemail.directory import sender_number
from ringwise_voicemail.mailbox import pin
from ringwise_voicemail.mailbox.greetings import Greeting, GreetingKind
from ringwise_voicemail.mailbox.retention import Folder
from ringwise_voicemail.messages.audio import concat_wavs, greeting_key, wav_duration_s
from ringwise_voicemail.messages.deposits import Voicemail, send_voice_message, team_recipients

log = get_logger(__name__)

Doc = dict[str, Any]
SESSION_TTL = timedelta(minutes=30)
LoginStatus = mailbox_pb2.MailboxLoginReply
ActionStatus = mailbox_pb2.MailboxActionReply
Action = mailbox_pb2.MailboxActionRequest

FOLDERS = {
    mailbox_pb2.FOLDER_NEW: Folder.NEW,
    mailbox_pb2.FOLDER_SAVED: Folder.SAVED,
    mailbox_pb2.FOLDER_ARCHIVED: Folder.ARCHIVED,
}
FOLDER_PROTO = {folder: value for value, folder in FOLDERS.items()}
ACTION_FOLDERS = {
    Action.ACTION_SAVE: Folder.SAVED,
    Action.ACTION_ARCHIVE: Folder.ARCHIVED,
}


def phone_sessions(client: AsyncMongoClient[Doc], database: str) -> AsyncCollection[Doc]:
    return client[database].phone_sessions


def envelope_media(doc: Doc, tz: str) -> list[str]:
    """ "Received <weekday> <month> <day> at <hour> <minute> a.m., from <number>"."""
    at = doc["received_at"].astimezone(ZoneInfo(tz))
    hour12 = at.hour % 12 or 12
    media = [
        "sound:vm-received",
        f"sound:digits/day-{(at.weekday() + 1) % 7}",  # day-0 is Sunday
        f"sound:digits/mon-{at.month - 1}",
        f"number:{at.day}",
        "sound:digits/at",
        f"number:{hour12}",
    ]
    if at.minute:
        media.append(f"number:{at.minute}")
    media.append("sound:digits/a-m" if at.hour < 12 else "sound:digits/p-m")
    number = "".join(c for c in doc.get("caller_number", "") if c.isdigit())
    media += (
        ["sound:vm-from-phonenumber", f"digits:{number}"] if number else ["sound:vm-unknown-caller"]
    )
    return media


@dataclass
class PhoneMailbox:
    vm: Voicemail
    sessions: AsyncCollection[Doc]

    async def login(self, req: mailbox_pb2.MailboxLoginRequest) -> mailbox_pb2.MailboxLoginReply:
        vm = self.vm
        mailbox = await vm.mailboxes.get(req.tenant_id, req.user_id)
        if mailbox is None:
            return LoginStatus(status=LoginStatus.STATUS_NO_MAILBOX)
        now = vm.clock()
        attempt = pin.attempt_login(mailbox.pin_hash, req.pin, mailbox.lock, now)
        if attempt.state != mailbox.lock:
            await vm.mailboxes.set_lock(req.tenant_id, req.user_id, attempt.state)
        if attempt.audit:
            await vm.mailboxes.audit(
                req.tenant_id,
                req.user_id,
                attempt.audit,
                now,
                channel="phone",
                call_id=req.call_id,
                caller_number=req.caller_number,
            )
        outcome = attempt.outcome
        if outcome is pin.Outcome.LOCKED_OUT:
            await self._locked_event(req, attempt.state)
        if outcome in (pin.Outcome.LOCKED, pin.Outcome.LOCKED_OUT):
            until = attempt.state.locked_until or now
            return LoginStatus(
                status=LoginStatus.STATUS_LOCKED,
                retry_after_s=max(1, int((until - now).total_seconds())),
            )
        if outcome is pin.Outcome.NO_PIN:
            return LoginStatus(status=LoginStatus.STATUS_NO_PIN)
        if outcome is pin.Outcome.WRONG_PIN:
            return LoginStatus(status=LoginStatus.STATUS_WRONG_PIN)
        # Expired sessions of this mailbox go at each login, so they never pile up.
        await self.sessions.delete_many(
            {"tenant_id": req.tenant_id, "user_id": req.user_id, "expires_at": {"$lte": now}}
        )
        token = secrets.token_urlsafe(24)
        await self.sessions.insert_one(
            {
                "_id": token,
                "tenant_id": req.tenant_id,
                "user_id": req.user_id,
                "expires_at": now + SESSION_TTL,
            }
        )
        counts = await vm.messages.counts(req.tenant_id, req.user_id)
        return LoginStatus(
            status=LoginStatus.STATUS_OK,
            session=token,
            new_messages=counts.new,
            saved_messages=counts.saved,
        )

    async def _locked_event(
        self, req: mailbox_pb2.MailboxLoginRequest, state: pin.LockState
    ) -> None:
        until = state.locked_until or self.vm.clock()
        event = alerts_pb2.MailboxLocked(
            header=call_pb2.EventHeader(
                event_id=f"{req.tenant_id}:{req.user_id}:locked:{until.isoformat()}",
                tenant_id=req.tenant_id,
                call_id=req.call_id,
                occurred_at=to_timestamp(self.vm.clock()),
            ),
            user_id=req.user_id,
            failures=state.failures,
            locked_until=to_timestamp(until),
        )
        await bus.publish_event(
            self.vm.js,
            subjects.voicemail_event(req.tenant_id, subjects.VOICEMAIL_MAILBOX_LOCKED),
            event,
            msg_id=event.header.event_id,
        )

    async def _session(self, token: str) -> Doc | None:
        if not token:
            return None
        doc = await self.sessions.find_one({"_id": token})
        if doc is None or doc["expires_at"] <= self.vm.clock():
            return None
        return doc

    async def list(self, req: mailbox_pb2.MailboxListRequest) -> mailbox_pb2.MailboxListReply:
        session = await self._session(req.session)
        if session is None:
            return mailbox_pb2.MailboxListReply()
        folders = [FOLDERS[f] for f in req.folders if f in FOLDERS] or [Folder.NEW, Folder.SAVED]
        mailbox = await self.vm.mailboxes.get(session["tenant_id"], session["user_id"])
        tz = mailbox.time_zone if mailbox else "UTC"
        found: list[mailbox_pb2.PhoneMessage] = []
        for folder in folders:
            docs = await self.vm.messages.page(
                session["tenant_id"], session["user_id"], folders=[folder], limit=200
            )
            for doc in reversed(docs):  # the phone plays the oldest first
                found.append(
                    mailbox_pb2.PhoneMessage(
                        message_id=doc["_id"],
                        folder=FOLDER_PROTO[Folder(doc["folder"])],
                        media=self.vm.audio_media(doc["audio_key"]),
                        caller_number=doc["caller_number"],
                        received_at=to_timestamp(doc["received_at"]),
                        duration_s=round(doc["duration_s"]),
                        urgent=doc["urgent"],
                        envelope=envelope_media(doc, tz),
                        sender_user_id=doc.get("sender_user_id") or "",
                    )
                )
        return mailbox_pb2.MailboxListReply(messages=found)

    async def act(self, req: mailbox_pb2.MailboxActionRequest) -> mailbox_pb2.MailboxActionReply:
        vm = self.vm
        session = await self._session(req.session)
        if session is None:
            return ActionStatus(status=ActionStatus.STATUS_NO_SESSION)
        tenant_id, user_id = session["tenant_id"], session["user_id"]
        if req.action == Action.ACTION_SET_PIN:
            return await self._set_pin(tenant_id, user_id, req.new_pin)
        if req.action == Action.ACTION_SET_GREETING:
            return await self._set_greeting(tenant_id, user_id, req)
        doc = await vm.messages.get(tenant_id, user_id, req.message_id)
        if doc is None:
            return ActionStatus(status=ActionStatus.STATUS_NOT_FOUND)
        reply = ActionStatus(status=ActionStatus.STATUS_DONE)
        if req.action in ACTION_FOLDERS:
            await vm.messages.set_folder(tenant_id, user_id, doc["_id"], ACTION_FOLDERS[req.action])
        elif req.action == Action.ACTION_DELETE:
            await vm.audio.delete(doc["audio_key"])
            await vm.messages.delete(tenant_id, user_id, doc["_id"])
        elif req.action == Action.ACTION_MARK_URGENT:
            await vm.messages.set_urgent(tenant_id, user_id, doc["_id"], True)
        elif req.action == Action.ACTION_FORWARD:
            forwarded = await self._forward(tenant_id, user_id, doc, req)
            if forwarded is None:
                return ActionStatus(status=ActionStatus.STATUS_NO_TARGET)
            reply.new_message_id = forwarded
        elif req.action == Action.ACTION_REPLY:
            return await self._reply(tenant_id, user_id, doc, req.recording, req.asterisk_instance)
        else:
            raise ValueError(f"unknown action {req.action}")
        await vm.refresh_counts(tenant_id, user_id)
        log.info(
            "phone_mailbox_action",
            action=Action.Action.Name(req.action),
            message_id=doc["_id"],
            user_id=user_id,
        )
        return reply

    async def _set_pin(self, tenant_id: str, user_id: str, new_pin: str) -> ActionStatus:
        try:
            hashed = pin.hash_pin(new_pin)
        except pin.PinRejected as exc:
            return ActionStatus(status=ActionStatus.STATUS_REJECTED, detail=str(exc))
        await self.vm.mailboxes.set_pin_hash(tenant_id, user_id, hashed)
        await self.vm.mailboxes.audit(
            tenant_id, user_id, "pin changed", self.vm.clock(), channel="phone"
        )
        return ActionStatus(status=ActionStatus.STATUS_DONE)

    async def _set_greeting(
        self, tenant_id: str, user_id: str, req: mailbox_pb2.MailboxActionRequest
    ) -> ActionStatus:
        vm = self.vm
        try:
            kind = GreetingKind(req.greeting_kind)
        except ValueError:
            return ActionStatus(status=ActionStatus.STATUS_REJECTED, detail="no such greeting")
        if not req.recording.startswith(f"vm-{subjects.tenant_token(tenant_id)}-"):
            raise ValueError("the recording is not this tenant's")
        mailbox = await vm.mailboxes.get(tenant_id, user_id)
        if mailbox is None:
            return ActionStatus(status=ActionStatus.STATUS_NOT_FOUND)
        try:
            asterisk = await vm.asterisk.client(req.asterisk_instance)
            audio = await asterisk.stored_recording_file(req.recording)
        except AriNotFound:
            return ActionStatus(status=ActionStatus.STATUS_REJECTED, detail="no recording")
        if not wav_duration_s(audio):
            return ActionStatus(status=ActionStatus.STATUS_REJECTED, detail="empty recording")
        now = vm.clock()
        for_day = (
            now.astimezone(ZoneInfo(mailbox.time_zone)).date()
            if kind is GreetingKind.TEMPORARY
            else None
        )
        key = greeting_key(tenant_id, user_id, kind.value, uuid.uuid4().hex)
        await vm.audio.put(key, audio)
        await vm.mailboxes.set_greeting(tenant_id, user_id, Greeting(kind, key, now, for_day))
        old = mailbox.greetings.get(kind)
        if old is not None:
            await vm.audio.delete(old.audio_key)
        await asterisk.delete_stored_recording(req.recording)
        log.info("greeting_recorded_by_phone", kind=kind.value, user_id=user_id)
        return ActionStatus(status=ActionStatus.STATUS_DONE)

    async def _forward(
        self, tenant_id: str, user_id: str, doc: Doc, req: mailbox_pb2.MailboxActionRequest
    ) -> str | None:
        """The message with the owner's annotation in front, to a user or to each member of a
        team who has a mailbox (the owner excluded). Returns the (first) copy's id; None when
        there is no target mailbox. The copies' ids derive from the annotation's name (one per
        forward), so a retried request delivers each copy once."""
        vm = self.vm
        if req.forward_to_user_id and req.forward_to_team_id:
            raise ValueError("forward to a user or to a team, not both")
        annotation_name = req.annotation_recording
        if annotation_name and not annotation_name.startswith(
            f"vm-{subjects.tenant_token(tenant_id)}-"
        ):
            raise ValueError("the annotation is not this tenant's recording")
        targets = await self._forward_targets(tenant_id, user_id, req)
        asterisk = await vm.asterisk.client(req.asterisk_instance) if annotation_name else None
        if not targets:
            if asterisk is not None:
                await asterisk.delete_stored_recording(annotation_name)
            return None
        audio = await vm.audio.get(doc["audio_key"])
        if asterisk is not None:
            try:
                annotation = await asterisk.stored_recording_file(annotation_name)
            except AriNotFound:
                annotation = b""  # never recorded, or used by the first try of this request
            if annotation:
                audio = concat_wavs(annotation, audio)
        duration = wav_duration_s(audio) or float(doc["duration_s"])
        sent = await send_voice_message(
            vm,
            tenant_id,
            list(targets),
            audio,
            duration,
            sender_number=doc["caller_number"],
            sender_name=f"forwarded by {user_id}",
            urgent=bool(doc.get("urgent")),
            request_key=f"forward:{annotation_name}" if annotation_name else "",
        )
        if asterisk is not None:
            await asterisk.delete_stored_recording(annotation_name)
        log.info(
            "phone_mailbox_forwarded",
            message_id=doc["_id"],
            to_user_ids=targets,
            team_id=req.forward_to_team_id or None,
        )
        return sent[targets[0]]

    async def _forward_targets(
        self, tenant_id: str, user_id: str, req: mailbox_pb2.MailboxActionRequest
    ) -> tuple[str, ...]:
        """Who gets a forwarded copy: the user (if they have a mailbox), or the team's active
        members with a mailbox in the team's order, the forwarding owner left out."""
        vm = self.vm
        if req.forward_to_team_id:
            team = await team_recipients(vm, tenant_id, req.forward_to_team_id)
            return tuple(u for u in team.with_mailbox if u != user_id) if team else ()
        target = req.forward_to_user_id
        if target and await vm.mailboxes.get(tenant_id, target) is not None:
            return (target,)
        return ()

    async def sender_of(self, tenant_id: str, doc: Doc) -> str | None:
        """The user of this tenant who sent the message: recorded when a user sent it, else
        the user its caller number (a DID, or an extension) belongs to."""
        if doc.get("sender_user_id"):
            return str(doc["sender_user_id"])
        number = str(doc.get("caller_number") or "")
        if not number:
            return None
        directory = self.vm.directory
        candidates = [number] if number.startswith("+") else [f"+{number}", number]
        for candidate in candidates:
            found = await directory.number(candidate)
            if found is not None:
                return found.user_id if found.tenant_id == tenant_id else None
        if number.isdigit():
            found = await directory.extension(tenant_id, number)
            if found is not None:
                return found.user_id
        return None

    async def _reply(
        self, tenant_id: str, user_id: str, doc: Doc, recording: str, instance: str
    ) -> mailbox_pb2.MailboxActionReply:
        """The owner's recorded answer, deposited in the sender's mailbox as a message from
        the owner (so the sender can reply in turn). instance: the Asterisk holding it."""
        vm = self.vm
        if not recording.startswith(f"vm-{subjects.tenant_token(tenant_id)}-"):
            raise ValueError("the reply is not this tenant's recording")
        asterisk = await vm.asterisk.client(instance)
        target = await self.sender_of(tenant_id, doc)
        if not target or await vm.mailboxes.get(tenant_id, target) is None:
            await asterisk.delete_stored_recording(recording)
            return ActionStatus(status=ActionStatus.STATUS_NO_TARGET)
        try:
            audio = await asterisk.stored_recording_file(recording)
        except AriNotFound:
            return ActionStatus(status=ActionStatus.STATUS_REJECTED, detail="no recording")
        duration = wav_duration_s(audio)
        if not duration:
            return ActionStatus(status=ActionStatus.STATUS_REJECTED, detail="empty recording")
        owner = await vm.directory.user(tenant_id, user_id)
        sent = await send_voice_message(
            vm,
            tenant_id,
            [target],
            audio,
            duration,
            sender_number=sender_number(owner) if owner else "",
            sender_name=owner.user_name if owner else user_id,
            urgent=False,
            sender_user_id=user_id,
            # The recording's name is unique per reply: a retried request delivers it once.
            request_key=f"reply:{recording}",
        )
        await asterisk.delete_stored_recording(recording)
        log.info("phone_mailbox_reply", message_id=doc["_id"], to_user_id=target)
        return ActionStatus(status=ActionStatus.STATUS_DONE, new_message_id=sent[target])
