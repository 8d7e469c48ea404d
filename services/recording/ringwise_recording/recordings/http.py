"""Recording operations (api.yaml beside this file), served over NATS through ApiRouter.

Every search, listing, view, playback and download is written to the tenant's audit chain
before the answer leaves; a recording the caller may not see answers 404 exactly like one
that does not exist (and the attempt is audited too).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ROLE_NAMES, ApiCall, ApiError, ApiResult, ApiRouter, field_error

from ringwise_recording.archive.bucket import WormBucket, error_code
from ringwise_recording.archive.envelope import CustomerKey, fingerprint
from ringwise_recording.recordings import access
from ringwise_recording.recordings.audit import AuditLog, export_entry
from ringwise_recording.recordings.store import Doc, RecordingStore
from ringwise_recording.recordings.stream import PATH as STREAM_PATH
from ringwise_recording.recordings.stream import StreamTokens

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass
class RecordingsContext:
    store: RecordingStore
    audit: AuditLog
    bucket: WormBucket
    download_url_s: int = 300
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # The decrypting playback stream (platform-key recordings); None: not offered.
    stream_tokens: StreamTokens | None = None
    stream_base_url: str = ""
    # Tells policy caches (routing) that a tenant's settings changed; None: nobody to tell.
    policy_changed: Callable[[str], Awaitable[None]] | None = None


MAX_SEQ = 2**63 - 1  # audit sequence numbers are Mongo 64-bit integers


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def recording_json(doc: Doc) -> dict[str, Any]:
    fields = (
        "tenant_id",
        "call_id",
        "source",
        "mode",
        "layout",
        "party",
        "user_id",
        "team_id",
        "from_number",
        "to_number",
        "started_at",
        "ended_at",
        "duration_ms",
        "format",
        "size",
        "sha256",
        "retention_days",
        "retain_until",
        "legal_hold",
        "key_mode",
        "key_id",
        "object_key",
        "version_id",
        "archived_at",
    )
    out = {"recording_id": doc["_id"]}
    out.update({name: _iso(doc.get(name)) for name in fields})
    return out


def _limit(call: ApiCall) -> int:
    raw = call.query_one("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise field_error("limit", f"an integer from 1 to {MAX_LIMIT}", 400)
    return int(raw)


def _when(call: ApiCall, name: str) -> datetime | None:
    raw = call.query_one(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise field_error(name, "an ISO 8601 date or date-time", 400) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _encode_cursor(doc: Doc) -> str:
    raw = f"{doc['started_at'].astimezone(UTC).isoformat()}|{doc['_id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(raw: str) -> tuple[datetime, str]:
    try:
        at, recording_id = base64.urlsafe_b64decode(raw.encode()).decode().split("|", 1)
        return datetime.fromisoformat(at), recording_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise field_error("cursor", "not a cursor this API returned", 400) from None


def _body(call: ApiCall, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(call.json())
    except ValidationError as exc:
        errors = [
            {"field": "/" + "/".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        raise ApiError(422, "Unprocessable Content", "the body is invalid", errors=errors) from None


class ReasonBody(BaseModel):
    reason: str = Field("", max_length=500)


class DownloadBody(ReasonBody):
    purpose: str = Field("download", pattern="^(download|playback)$")


class LegalHoldBody(ReasonBody):
    on: bool


def build_router(ctx: RecordingsContext) -> ApiRouter:
    router = ApiRouter()

    async def audit(call: ApiCall, action: str, target: str = "", **details: Any) -> None:
        reason = details.pop("reason", "") or call.query_one("reason") or ""
        await ctx.audit.append(
            call.tenant_id,
            at=ctx.clock(),
            actor=call.principal.subject_id,
            role=ROLE_NAMES.get(call.principal.role, "unknown"),
            action=action,
            target=target,
            reason=str(reason),
            details={"request_id": call.request_id, **details},
        )

    async def entitled(call: ApiCall, action: str) -> tuple[Doc, Doc]:
        """The recording and the tenant's settings; 404 (audited) when the caller may not see
        it or it does not exist."""
        recording_id = call.param("recording_id")
        doc = await ctx.store.get_in_tenant(call.tenant_id, recording_id)
        settings = await ctx.store.tenant_settings(call.tenant_id)
        if (
            doc is None
            or doc.get("state") != "archived"
            or not access.may_see(call.principal, settings, doc)
        ):
            await audit(call, f"{action}_denied", recording_id)
            raise ApiError(404, "Not Found", "no such recording")
        return doc, settings

    @router.operation("listRecordings")
    async def list_recordings(call: ApiCall) -> ApiResult:
        if not access.may_list(call.principal):
            raise ApiError(
                403,
                "Forbidden",
                "recordings are for compliance officers and the "
                "users and supervisors entitled to them",
            )
        limit = _limit(call)
        since, until = _when(call, "from"), _when(call, "to")
        cursor = call.query_one("cursor")
        after = _decode_cursor(cursor) if cursor else None
        filters = {
            "party": call.query_one("party"),
            "user_id": call.query_one("user_id"),
            "team_id": call.query_one("team_id"),
        }
        settings = await ctx.store.tenant_settings(call.tenant_id)
        role = call.role
        user_scope: str | None = None
        team_scope: list[str] | None = None
        if role in (api_pb2.ROLE_USER, api_pb2.ROLE_SUPERVISOR):
            user_scope = call.principal.subject_id
        if role == api_pb2.ROLE_SUPERVISOR:
            team_scope = access.supervised_teams(settings, call.principal.subject_id)
        docs = await ctx.store.search(
            call.tenant_id,
            since=since,
            until=until,
            party=filters["party"],
            user_id=filters["user_id"],
            team_id=filters["team_id"],
            after=after,
            limit=limit,
            only_user=user_scope,
            only_teams=team_scope,
        )
        searched = {k: v for k, v in filters.items() if v}
        if since:
            searched["from"] = since.isoformat()
        if until:
            searched["to"] = until.isoformat()
        await audit(
            call,
            "search" if searched else "list",
            "recordings",
            query=searched,
            results=[d["_id"] for d in docs],
        )
        return ApiResult(
            body={
                "items": [recording_json(d) for d in docs],
                "next_cursor": _encode_cursor(docs[-1]) if len(docs) == limit else None,
            }
        )

    @router.operation("getRecording")
    async def get_recording(call: ApiCall) -> ApiResult:
        doc, _ = await entitled(call, "view")
        await audit(call, "view", doc["_id"])
        return ApiResult(body=recording_json(doc))

    @router.operation("createRecordingDownload")
    async def create_download(call: ApiCall) -> ApiResult:
        body: DownloadBody = _body(call, DownloadBody) if call.body else DownloadBody()
        doc, _ = await entitled(call, body.purpose)
        url = await ctx.bucket.presign(doc["object_key"], doc["version_id"], ctx.download_url_s)
        await audit(call, body.purpose, doc["_id"], reason=body.reason)
        expires = ctx.clock() + timedelta(seconds=ctx.download_url_s)
        reply = {
            "url": url,
            "expires_at": expires.isoformat(),
            "sha256": doc["sha256"],
            "ciphertext_sha256": doc["ciphertext_sha256"],
            "key_mode": doc["key_mode"],
            "key_id": doc["key_id"],
            "format": "ringwise-recording-envelope/1",
        }
        if body.purpose == "playback" and doc["key_mode"] == "platform" and ctx.stream_tokens:
            token = ctx.stream_tokens.issue(call.tenant_id, doc["_id"], expires)
            reply["stream_url"] = ctx.stream_base_url + STREAM_PATH.format(token=token)
        return ApiResult(status=201, body=reply)

    @router.operation("setRecordingLegalHold")
    async def set_legal_hold(call: ApiCall) -> ApiResult:
        if not access.may_manage(call.principal):
            await audit(call, "legal_hold_denied", call.param("recording_id"))
            raise ApiError(404, "Not Found", "no such recording")
        body: LegalHoldBody = _body(call, LegalHoldBody)
        doc, _ = await entitled(call, "legal_hold")
        await ctx.bucket.set_legal_hold(doc["object_key"], doc["version_id"], body.on)
        updated = await ctx.store.update(doc["_id"], {"legal_hold": body.on})
        await audit(
            call, "legal_hold_on" if body.on else "legal_hold_off", doc["_id"], reason=body.reason
        )
        return ApiResult(body=recording_json(updated or doc))

    @router.operation("deleteRecording")
    async def delete_recording(call: ApiCall) -> ApiResult:
        if not access.may_manage(call.principal):
            await audit(call, "delete_denied", call.param("recording_id"))
            raise ApiError(404, "Not Found", "no such recording")
        doc, _ = await entitled(call, "delete")
        now = ctx.clock()
        if doc.get("legal_hold") or now < doc["retain_until"]:
            await audit(call, "delete_refused", doc["_id"])
            until = _iso(doc["retain_until"])
            raise ApiError(
                409,
                "Conflict",
                "the recording is under legal hold"
                if doc.get("legal_hold")
                else f"the recording is locked (COMPLIANCE) until {until}",
            )
        try:
            await ctx.bucket.delete_version(doc["object_key"], doc["version_id"])
        except Exception as exc:
            if error_code(exc) != "AccessDenied":
                raise
            await audit(call, "delete_refused", doc["_id"], by="s3")
            raise ApiError(409, "Conflict", "the archive refuses: the version is locked") from None
        await ctx.store.delete(doc["_id"])
        await audit(call, "delete", doc["_id"])
        return ApiResult(status=204)

    @router.operation("keepCallRecording")
    async def keep_call_recording(call: ApiCall) -> ApiResult:
        body: ReasonBody = _body(call, ReasonBody) if call.body else ReasonBody()
        if not access.may_list(call.principal):
            raise ApiError(
                403,
                "Forbidden",
                "only the call's user, supervisors and compliance officers can keep a recording",
            )
        call_id = call.param("call_id")
        existing = await ctx.store.recordings_of_call(call.tenant_id, call_id)
        if any(doc["state"] == "discarded" for doc in existing):
            raise ApiError(409, "Conflict", "the call has ended and its recording was discarded")
        await ctx.store.request_keep(
            {
                "_id": f"{call.tenant_id}:{call_id}:{call.principal.subject_id}",
                "tenant_id": call.tenant_id,
                "call_id": call_id,
                "requested_by": call.principal.subject_id,
                "role": ROLE_NAMES.get(call.principal.role, "unknown"),
                # A supervisor or officer keeps it for the user; a user only their own call.
                "on_behalf": call.role != api_pb2.ROLE_USER,
                "at": ctx.clock(),
            }
        )
        await audit(call, "keep", call_id, reason=body.reason)
        return ApiResult(status=202, body={"call_id": call_id, "keep_requested": True})

    @router.operation("exportRecordingAudit")
    async def export_audit(call: ApiCall) -> ApiResult:
        if not access.may_manage(call.principal):
            raise ApiError(403, "Forbidden", "the audit log is for compliance officers")
        limit = _limit(call)
        raw_after = call.query_one("after_seq", "0") or "0"
        # ASCII digits only, and within the store's 64-bit integers.
        if not (raw_after.isascii() and raw_after.isdigit()) or int(raw_after) > MAX_SEQ:
            raise field_error("after_seq", f"an integer from 0 to {MAX_SEQ}", 400)
        await audit(call, "audit_export", "audit")
        entries = await ctx.audit.page(call.tenant_id, int(raw_after), limit)
        check = await ctx.audit.verify(call.tenant_id)
        return ApiResult(
            body={
                "items": [export_entry(e) for e in entries],
                "next_after_seq": entries[-1]["seq"] if len(entries) == limit else None,
                "verification": check.as_json(),
            }
        )

    @router.operation("getRecordingSettings")
    async def get_settings(call: ApiCall) -> ApiResult:
        stored = await ctx.store.tenant_settings(call.tenant_id)
        return ApiResult(body=settings_json(stored), headers={"ETag": _etag(stored)})

    @router.operation("putRecordingSettings")
    async def put_settings(call: ApiCall) -> ApiResult:
        body: access.TenantRecordingSettings = _body(call, access.TenantRecordingSettings)
        encryption: dict[str, Any] = {"mode": body.encryption.mode}
        if body.encryption.mode == "customer":
            pem = (body.encryption.public_key_pem or "").encode()
            try:
                CustomerKey("check", pem).public_key()
                key_id = fingerprint(pem)
            except (ValueError, TypeError) as exc:
                raise field_error("/encryption/public_key_pem", str(exc)) from None
            encryption |= {"public_key_pem": pem.decode(), "key_id": key_id}
        changes = body.model_dump(exclude={"encryption"})
        changes["encryption"] = encryption
        if_version = None
        if call.if_match:
            current = await ctx.store.tenant_settings(call.tenant_id)
            if call.if_match != _etag(current):
                raise ApiError(412, "Precondition Failed", "the settings changed meanwhile")
            if_version = int(current.get("version", 0))
        stored = await ctx.store.put_tenant_settings(call.tenant_id, changes, if_version)
        if stored is None:
            raise ApiError(412, "Precondition Failed", "the settings changed meanwhile")
        await audit(call, "settings_changed", "settings", encryption_mode=encryption["mode"])
        if ctx.policy_changed is not None:
            await ctx.policy_changed(call.tenant_id)
        return ApiResult(body=settings_json(stored), headers={"ETag": _etag(stored)})

    return router


def _etag(settings: Doc) -> str:
    return f'"{int(settings.get("version", 0))}"'


def settings_json(doc: Doc) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "version")}
    out["tenant_id"] = doc["_id"]
    out.setdefault("encryption", {"mode": "platform"})
    return out
