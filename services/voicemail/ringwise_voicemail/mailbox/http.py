"""Mailbox settings, PIN, greetings and tenant retention (operations in mailbox/api.yaml)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, field_error, not_found

from ringwise_voicemail.mailbox import pin
from ringwise_voicemail.mailbox.greetings import Greeting, GreetingKind
from ringwise_voicemail.mailbox.retention import RetentionPolicy
from ringwise_voicemail.mailbox.store import Mailbox
from ringwise_voicemail.messages import mwi
from ringwise_voicemail.messages.audio import greeting_key, wav_duration_s
from ringwise_voicemail.messages.deposits import Voicemail

# Audio travels base64 in one NATS message (1 MB by default): 30 s of 8 kHz 16-bit WAV fits.
MAX_GREETING_SECONDS = 30
_BOOL_FIELDS = ("email_attach", "email_keep", "extended_absence")


def mailbox_json(mailbox: Mailbox) -> dict[str, Any]:
    return {
        "tenant_id": mailbox.tenant_id,
        "user_id": mailbox.user_id,
        "email": mailbox.email,
        "email_attach": mailbox.email_attach,
        "email_keep": mailbox.email_keep,
        "time_zone": mailbox.time_zone,
        "display_name": mailbox.display_name,
        "extended_absence": mailbox.extended_absence,
        "alerts": {
            "sms": mailbox.alerts.sms,
            "email": mailbox.alerts.email,
            "call": mailbox.alerts.call,
        },
        "pin_set": bool(mailbox.pin_hash),
        "greetings": sorted(kind.value for kind in mailbox.greetings),
        "mwi_account": f"sip:{mailbox.mwi_name}",
        "mwi_targets": list(mailbox.mwi_targets),
    }


def _etag(mailbox: Mailbox) -> str:
    return f'"{mailbox.version}"'


def parse_settings(body: Any) -> dict[str, Any]:
    """The settings body, checked field by field (the gateway checks the schema too)."""
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "the body must be a JSON object")
    settings: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    if "email" in body:
        email = body["email"]
        if not isinstance(email, str) or (email and ("@" not in email or " " in email)):
            errors.append({"field": "/email", "message": "not an email address"})
        else:
            settings["email"] = email
    for name in _BOOL_FIELDS:
        if name in body:
            if not isinstance(body[name], bool):
                errors.append({"field": f"/{name}", "message": "must be true or false"})
            else:
                settings[name] = body[name]
    if "time_zone" in body:
        try:
            ZoneInfo(str(body["time_zone"]))
            settings["time_zone"] = str(body["time_zone"])
        except (ZoneInfoNotFoundError, ValueError):
            errors.append({"field": "/time_zone", "message": "unknown IANA time zone"})
    if "display_name" in body:
        if not isinstance(body["display_name"], str) or len(body["display_name"]) > 100:
            errors.append({"field": "/display_name", "message": "a string of at most 100"})
        else:
            settings["display_name"] = body["display_name"]
    if "alerts" in body:
        alerts = body["alerts"]
        if not isinstance(alerts, dict) or not all(
            k in ("sms", "email", "call") and isinstance(v, bool) for k, v in alerts.items()
        ):
            errors.append({"field": "/alerts", "message": "sms, email, call: true or false"})
        else:
            settings["alerts"] = {k: bool(alerts.get(k, False)) for k in ("sms", "email", "call")}
    if "mwi_targets" in body:
        targets = body["mwi_targets"]
        if (
            not isinstance(targets, list)
            or len(targets) > 20
            or not all(isinstance(t, str) and mwi.valid_target(t) for t in targets)
        ):
            errors.append(
                {"field": "/mwi_targets", "message": "up to 20 PJSIP endpoint ids or SIP URIs"}
            )
        else:
            settings["mwi_targets"] = list(dict.fromkeys(targets))
    if errors:
        raise ApiError(422, "Unprocessable Content", "invalid voicemail settings", errors=errors)
    return settings


def decode_audio(body: dict[str, Any], field: str = "audio_base64") -> tuple[bytes, float]:
    raw = body.get(field)
    if not isinstance(raw, str) or not raw:
        raise field_error(f"/{field}", "base64 of a WAV recording is required")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise field_error(f"/{field}", "not valid base64") from None
    duration = wav_duration_s(data)
    if duration is None:
        raise field_error(f"/{field}", "not a WAV recording")
    return data, duration


def routes(vm: Voicemail) -> ApiRouter:
    router = ApiRouter()

    async def existing(call: ApiCall) -> Mailbox:
        mailbox = await vm.mailboxes.get(call.tenant_id, call.param("user_id"))
        if mailbox is None:
            raise not_found("mailbox")
        return mailbox

    @router.operation("getVoicemailSettings")
    async def get_settings(call: ApiCall) -> ApiResult:
        mailbox = await existing(call)
        return ApiResult(body=mailbox_json(mailbox), headers={"ETag": _etag(mailbox)})

    @router.operation("putVoicemailSettings")
    async def put_settings(call: ApiCall) -> ApiResult:
        settings = parse_settings(call.json())
        current = await vm.mailboxes.get(call.tenant_id, call.param("user_id"))
        if call.if_match and (current is None or call.if_match != _etag(current)):
            raise ApiError(412, "Precondition Failed", "the mailbox changed meanwhile")
        mailbox = await vm.mailboxes.put_settings(
            call.tenant_id, call.param("user_id"), settings, vm.clock()
        )
        return ApiResult(
            status=201 if current is None else 200,
            body=mailbox_json(mailbox),
            headers={"ETag": _etag(mailbox)},
        )

    @router.operation("setVoicemailPin")
    async def set_pin(call: ApiCall) -> ApiResult:
        await existing(call)
        body = call.json()
        new_pin = body.get("pin") if isinstance(body, dict) else None
        if not isinstance(new_pin, str):
            raise field_error("/pin", "a string of digits is required")
        try:
            hashed = pin.hash_pin(new_pin)
        except pin.PinRejected as exc:
            raise field_error("/pin", str(exc)) from None
        await vm.mailboxes.set_pin_hash(call.tenant_id, call.param("user_id"), hashed)
        await vm.mailboxes.audit(
            call.tenant_id,
            call.param("user_id"),
            "pin changed",
            vm.clock(),
            by=call.principal.subject_id,
        )
        return ApiResult(status=204)

    @router.operation("putVoicemailGreeting")
    async def put_greeting(call: ApiCall) -> ApiResult:
        mailbox = await existing(call)
        kind = _kind(call.param("kind"))
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request", "the body must be a JSON object")
        data, duration = decode_audio(body)
        if duration > MAX_GREETING_SECONDS:
            raise field_error("/audio_base64", f"longer than {MAX_GREETING_SECONDS} s")
        for_day = None
        if kind is GreetingKind.TEMPORARY:
            try:
                for_day = date.fromisoformat(str(body.get("for_day", "")))
            except ValueError:
                now_local = vm.clock().astimezone(ZoneInfo(mailbox.time_zone))
                if "for_day" in body:
                    raise field_error("/for_day", "a date, YYYY-MM-DD") from None
                for_day = now_local.date()
        key = greeting_key(call.tenant_id, mailbox.user_id, kind.value, uuid.uuid4().hex)
        await vm.audio.put(key, data)
        old = mailbox.greetings.get(kind)
        await vm.mailboxes.set_greeting(
            call.tenant_id, mailbox.user_id, Greeting(kind, key, vm.clock(), for_day)
        )
        if old is not None:
            await vm.audio.delete(old.audio_key)
        return ApiResult(
            status=201,
            body={
                "kind": kind.value,
                "duration_s": round(duration, 2),
                "for_day": for_day.isoformat() if for_day else None,
            },
        )

    @router.operation("deleteVoicemailGreeting")
    async def delete_greeting(call: ApiCall) -> ApiResult:
        mailbox = await existing(call)
        kind = _kind(call.param("kind"))
        old = mailbox.greetings.get(kind)
        if old is None:
            raise not_found("greeting")
        await vm.mailboxes.remove_greeting(call.tenant_id, mailbox.user_id, kind)
        await vm.audio.delete(old.audio_key)
        return ApiResult(status=204)

    @router.operation("putVoicemailRetention")
    async def put_retention(call: ApiCall) -> ApiResult:
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request", "the body must be a JSON object")
        unsaved = body.get("unsaved_days", 30)
        saved = body.get("saved_days")
        if not isinstance(unsaved, int) or isinstance(unsaved, bool) or unsaved < 1:
            raise field_error("/unsaved_days", "a whole number of days, at least 1")
        if saved is not None and (
            not isinstance(saved, int) or isinstance(saved, bool) or saved < 1
        ):
            raise field_error("/saved_days", "a whole number of days, at least 1, or null")
        policy = RetentionPolicy(unsaved_days=unsaved, saved_days=saved)
        await vm.mailboxes.set_retention(call.tenant_id, policy)
        return ApiResult(body={"unsaved_days": unsaved, "saved_days": saved})

    return router


def _kind(value: str) -> GreetingKind:
    try:
        return GreetingKind(value)
    except ValueError:
        raise ApiError(
            404,
            "Not Found",
            f"no greeting kind {value!r}; one of " + ", ".join(k.value for k in GreetingKind),
        ) from None
