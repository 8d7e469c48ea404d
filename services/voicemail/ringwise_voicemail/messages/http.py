"""Messages over the API: list, get (audio by short-lived link), file, delete, send a voice
message to users (operations in messages/api.yaml)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, field_error, not_found

from ringwise_voicemail.mailbox.http import decode_audio
from ringwise_voicemail.mailbox.retention import Folder
from ringwise_voicemail.messages.deposits import Voicemail, send_voice_message, team_recipients

Doc = dict[str, Any]
MAX_BROADCAST = 200
MAX_MESSAGE_SECONDS = 30  # see mailbox/http.py MAX_GREETING_SECONDS


def message_json(doc: Doc) -> dict[str, Any]:
    return {
        "message_id": doc["_id"],
        "user_id": doc["user_id"],
        "folder": doc["folder"],
        "received_at": doc["received_at"],
        "duration_s": doc["duration_s"],
        "caller_number": doc["caller_number"],
        "caller_name": doc["caller_name"],
        "urgent": doc["urgent"],
        "call_id": doc.get("call_id", ""),
    }


def _cursor(doc: Doc) -> str:
    raw = json.dumps([doc["received_at"].isoformat(), doc["_id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, message_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(message_id)
    except (ValueError, TypeError, binascii.Error):
        raise field_error("cursor", "not a cursor from this list", status=400) from None


def _limit(call: ApiCall) -> int:
    raw = call.query_one("limit", "50") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise field_error("limit", "a whole number from 1 to 200", status=400)
    return int(raw)


def _request_key(call: ApiCall, audio: bytes) -> str:
    """What makes a send request the same one again: the sender's Idempotency-Key, and the
    audio (a key reused for another message is another request). "" = no key: every send
    is new."""
    if not call.idempotency_key:
        return ""
    digest = hashlib.sha256(audio).hexdigest()
    return f"{call.principal.subject_id}:{call.idempotency_key}:{digest}"


def routes(vm: Voicemail) -> ApiRouter:
    router = ApiRouter()

    async def message(call: ApiCall) -> Doc:
        doc = await vm.messages.get(call.tenant_id, call.param("user_id"), call.param("message_id"))
        if doc is None:
            raise not_found("message")
        return doc

    @router.operation("listVoicemailMessages")
    async def list_messages(call: ApiCall) -> ApiResult:
        folders = []
        for value in call.query_all("folder"):
            try:
                folders.append(Folder(value))
            except ValueError:
                raise field_error("folder", "one of new, saved, archived", status=400) from None
        limit = _limit(call)
        cursor = call.query_one("cursor")
        docs = await vm.messages.page(
            call.tenant_id,
            call.param("user_id"),
            folders=folders,
            limit=limit + 1,
            before=_parse_cursor(cursor) if cursor else None,
        )
        page = docs[:limit]
        return ApiResult(
            body={
                "items": [message_json(d) for d in page],
                "next_cursor": _cursor(page[-1]) if len(docs) > limit else None,
            }
        )

    @router.operation("getVoicemailMessage")
    async def get_message(call: ApiCall) -> ApiResult:
        doc = await message(call)
        body = message_json(doc)
        body["audio_url"] = vm.audio.url(doc["audio_key"], vm.audio_url_ttl_s)
        body["audio_url_expires_in_s"] = vm.audio_url_ttl_s
        return ApiResult(body=body)

    @router.operation("updateVoicemailMessage")
    async def update_message(call: ApiCall) -> ApiResult:
        doc = await message(call)
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request", "the body must be a JSON object")
        if "folder" in body:
            try:
                folder = Folder(body["folder"])
            except ValueError:
                raise field_error("/folder", "one of new, saved, archived") from None
            await vm.messages.set_folder(call.tenant_id, doc["user_id"], doc["_id"], folder)
        if "urgent" in body:
            if not isinstance(body["urgent"], bool):
                raise field_error("/urgent", "must be true or false")
            await vm.messages.set_urgent(call.tenant_id, doc["user_id"], doc["_id"], body["urgent"])
        await vm.refresh_counts(call.tenant_id, doc["user_id"])
        updated = await vm.messages.by_id(doc["_id"])
        return ApiResult(body=message_json(updated or doc))

    @router.operation("deleteVoicemailMessage")
    async def delete_message(call: ApiCall) -> ApiResult:
        doc = await message(call)
        # Audio first: never metadata pointing at nothing we could not find again.
        await vm.audio.delete(doc["audio_key"])
        await vm.messages.delete(call.tenant_id, doc["user_id"], doc["_id"])
        await vm.refresh_counts(call.tenant_id, doc["user_id"])
        return ApiResult(status=204)

    @router.operation("sendVoiceMessage")
    async def send(call: ApiCall) -> ApiResult:
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request", "the body must be a JSON object")
        to, team_id = body.get("to_user_ids"), body.get("to_team_id")
        if (to is None) == (team_id is None):
            raise ApiError(
                422,
                "Unprocessable Content",
                "name the recipients: to_user_ids or to_team_id (one of them)",
                errors=[{"field": "/to_user_ids", "message": "give this or to_team_id"}],
            )
        if to is not None and (
            not isinstance(to, list)
            or not to
            or len(to) > MAX_BROADCAST
            or not all(isinstance(u, str) and u for u in to)
        ):
            raise field_error("/to_user_ids", f"1 to {MAX_BROADCAST} user ids")
        if team_id is not None and (not isinstance(team_id, str) or not team_id):
            raise field_error("/to_team_id", "a team id")
        urgent = body.get("urgent", False)
        if not isinstance(urgent, bool):
            raise field_error("/urgent", "must be true or false")
        data, duration = decode_audio(body)
        if duration > MAX_MESSAGE_SECONDS:
            raise field_error("/audio_base64", f"longer than {MAX_MESSAGE_SECONDS} s")
        skipped: list[str] = []
        if team_id is not None:
            try:
                team = await team_recipients(vm, call.tenant_id, team_id)
            except Exception as exc:
                raise ApiError(503, "Service Unavailable", "the directory did not answer") from exc
            if team is None:
                raise not_found("team")
            if not team.members:
                raise field_error("/to_team_id", "the team has no active members")
            recipients, skipped = team.with_mailbox, team.without_mailbox
            if not recipients:
                raise field_error("/to_team_id", "no member of the team has a mailbox")
        else:
            recipients = list(dict.fromkeys(to or []))
            missing = [u for u in recipients if await vm.mailboxes.get(call.tenant_id, u) is None]
            if missing:
                raise ApiError(
                    422,
                    "Unprocessable Content",
                    "some users have no mailbox",
                    errors=[
                        {"field": "/to_user_ids", "message": f"no mailbox: {u}"} for u in missing
                    ],
                )
        sender = call.principal.subject_id
        sent = await send_voice_message(
            vm,
            call.tenant_id,
            recipients,
            data,
            duration,
            sender_number=str(body.get("from_number", "")),
            sender_name=str(body.get("from_name", sender)),
            urgent=urgent,
            # A user of this tenant sending: replies to the message go back to them.
            sender_user_id=sender if call.principal.tenant_id == call.tenant_id else "",
            request_key=_request_key(call, data),
        )
        reply: dict[str, Any] = {
            "messages": [{"user_id": u, "message_id": m} for u, m in sent.items()]
        }
        if team_id is not None:
            reply["team_id"] = team_id
            reply["skipped_user_ids"] = skipped  # members without a mailbox
        return ApiResult(status=202, body=reply)

    return router
