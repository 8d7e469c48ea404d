"""Recording access over the gateway's forwarding (NATS, ApiRouter) against the running service:
search, entitlement (404 for the others), download, legal hold, refused deletion, audit chain,
settings and the policy request routing makes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise.events.v1 import recording_pb2
from ringwise_dev.platform import LocalPlatform
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiCall, call_service
from ringwise_recording.archive.envelope import fingerprint, open_stream

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers are beside us
from recording_helpers import (
    RECORDING_DB,
    finished_event,
    platform_key,
    publish_finished,
    put_on_asterisk,
    s3_client,
    wait_state,
    wav_bytes,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

Mongo = AsyncMongoClient[dict[str, Any]]
DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "recording-api-tests")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[Mongo]:
    client: Mongo = AsyncMongoClient(platform.infra.endpoints.mongo_url, tz_aware=True)
    yield client
    await client.close()


def principal(tenant: str, role: int, subject: str) -> api_pb2.Principal:
    return api_pb2.Principal(subject_id=subject, tenant_id=tenant, role=role)  # type: ignore[arg-type]


def officer(tenant: str) -> api_pb2.Principal:
    return principal(tenant, api_pb2.ROLE_COMPLIANCE_OFFICER, "officer-1")


async def api(
    nc: NatsClient,
    operation: str,
    who: api_pb2.Principal,
    *,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    **params: str,
) -> tuple[int, Any]:
    reply = await call_service(
        nc,
        "recording",
        ApiCall(
            operation=operation,
            principal=who,
            path_params=params,
            query=query or [],
            body=json.dumps(body).encode() if body is not None else b"",
            request_id=uuid.uuid4().hex,
        ),
    )
    return reply.status, json.loads(reply.body) if reply.body else None


async def archive(
    platform: LocalPlatform, nc: NatsClient, mongo: Mongo, tenant: str, **event: Any
) -> dict[str, Any]:
    name = f"rec-{tenant}-{uuid.uuid4().hex[:10]}"
    event.setdefault("retention_days", 3650)
    put_on_asterisk(platform, name, wav_bytes(2))
    await publish_finished(nc, finished_event(name, tenant_id=tenant, **event))
    return await wait_state(mongo, name, "archived")


@pytest_asyncio.fixture(loop_scope="session")
async def initech(platform: LocalPlatform, nc: NatsClient, mongo: Mongo) -> dict[str, Any]:
    """Three archived recordings of tenant initech: two users, two teams, two days."""
    tenant = "initech-" + uuid.uuid4().hex[:6]
    status, _ = await api(
        nc,
        "putRecordingSettings",
        principal(tenant, api_pb2.ROLE_TENANT_ADMIN, "admin"),
        body={"teams": {"sales": {"supervisors": ["sup-1"]}}},
        tenant_id=tenant,
    )
    assert status == 200
    docs = await asyncio.gather(
        archive(
            platform,
            nc,
            mongo,
            tenant,
            user_id="alice",
            team_id="sales",
            started_at=DAY1,
            from_number="+441111",
        ),
        archive(
            platform,
            nc,
            mongo,
            tenant,
            user_id="alice",
            team_id="sales",
            started_at=DAY2,
            from_number="+442222",
        ),
        archive(
            platform,
            nc,
            mongo,
            tenant,
            user_id="bob",
            team_id="support",
            started_at=DAY2,
            from_number="+441111",
        ),
    )
    return {"tenant": tenant, "docs": docs}


def ids(body: dict[str, Any]) -> set[str]:
    return {item["recording_id"] for item in body["items"]}


async def test_compliance_officer_searches_by_date_party_user_and_team(
    nc: NatsClient, initech: dict[str, Any]
) -> None:
    tenant, (a1, a2, b2) = initech["tenant"], initech["docs"]
    who = officer(tenant)
    cases: list[tuple[list[tuple[str, str]], set[str]]] = [
        ([], {a1["_id"], a2["_id"], b2["_id"]}),
        ([("from", "2026-03-05T00:00:00Z")], {a2["_id"], b2["_id"]}),
        ([("to", "2026-03-05")], {a1["_id"]}),
        ([("party", "+441111")], {a1["_id"], b2["_id"]}),
        ([("user_id", "alice")], {a1["_id"], a2["_id"]}),
        ([("team_id", "support")], {b2["_id"]}),
        ([("party", "+441111"), ("from", "2026-03-05T00:00:00+00:00")], {b2["_id"]}),
    ]
    for query, expected in cases:
        status, body = await api(nc, "listRecordings", who, query=query, tenant_id=tenant)
        assert status == 200, body
        assert ids(body) == expected, query
    # Paging: newest first, a cursor to the rest.
    status, first = await api(nc, "listRecordings", who, query=[("limit", "2")], tenant_id=tenant)
    assert len(first["items"]) == 2 and first["next_cursor"]
    status, rest = await api(
        nc,
        "listRecordings",
        who,
        query=[("limit", "2"), ("cursor", first["next_cursor"])],
        tenant_id=tenant,
    )
    assert ids(first) | ids(rest) == {a1["_id"], a2["_id"], b2["_id"]}
    assert first["items"][-1]["started_at"] >= rest["items"][0]["started_at"]
    status, bad = await api(nc, "listRecordings", who, query=[("limit", "0")], tenant_id=tenant)
    assert status == 400 and bad["errors"][0]["field"] == "limit"
    status, bad = await api(nc, "listRecordings", who, query=[("from", "soon")], tenant_id=tenant)
    assert status == 400


async def test_users_see_their_own_supervisors_their_teams_and_others_get_404(
    nc: NatsClient, initech: dict[str, Any]
) -> None:
    tenant, (a1, a2, _) = initech["tenant"], initech["docs"]
    alice = principal(tenant, api_pb2.ROLE_USER, "alice")
    bob = principal(tenant, api_pb2.ROLE_USER, "bob")
    supervisor = principal(tenant, api_pb2.ROLE_SUPERVISOR, "sup-1")
    admin = principal(tenant, api_pb2.ROLE_TENANT_ADMIN, "admin")
    stranger = officer("another-tenant")

    _, body = await api(nc, "listRecordings", alice, tenant_id=tenant)
    assert ids(body) == {a1["_id"], a2["_id"]}
    # A user's filter cannot widen their scope.
    _, body = await api(nc, "listRecordings", alice, query=[("user_id", "bob")], tenant_id=tenant)
    assert ids(body) == set()
    _, body = await api(nc, "listRecordings", supervisor, tenant_id=tenant)
    assert ids(body) == {a1["_id"], a2["_id"]}
    status, _ = await api(nc, "listRecordings", admin, tenant_id=tenant)
    assert status == 403

    status, body = await api(nc, "getRecording", alice, tenant_id=tenant, recording_id=a1["_id"])
    assert status == 200 and body["sha256"] == a1["sha256"]
    for who, tenant_in_path in (
        (bob, tenant),
        (admin, tenant),
        (stranger, tenant),
        (stranger, "another-tenant"),
    ):
        for operation in ("getRecording", "createRecordingDownload"):
            status, body = await api(
                nc, operation, who, tenant_id=tenant_in_path, recording_id=a1["_id"]
            )
            assert status == 404, (who.subject_id, operation, body)
            assert a1["sha256"] not in json.dumps(body)


async def test_a_download_is_a_short_lived_url_to_the_encrypted_recording(
    nc: NatsClient, initech: dict[str, Any], platform: LocalPlatform
) -> None:
    tenant, doc = initech["tenant"], initech["docs"][0]
    alice = principal(tenant, api_pb2.ROLE_USER, "alice")
    status, body = await api(
        nc,
        "createRecordingDownload",
        alice,
        body={"purpose": "playback", "reason": "customer complaint 42"},
        tenant_id=tenant,
        recording_id=doc["_id"],
    )
    assert status == 201, body
    assert body["ciphertext_sha256"] == doc["ciphertext_sha256"]
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(seconds=300)
    async with aiohttp.ClientSession() as session, session.get(body["url"]) as resp:
        assert resp.status == 200
        ciphertext = await resp.read()
    assert hashlib.sha256(ciphertext).hexdigest() == doc["ciphertext_sha256"]

    async def once() -> AsyncIterator[bytes]:
        yield ciphertext

    plain = b"".join([c async for c in open_stream(once(), platform_key(platform))])
    assert hashlib.sha256(plain).hexdigest() == body["sha256"] == doc["sha256"]
    # Playback of a platform-key recording: a decrypting stream from the service itself.
    assert body["stream_url"].startswith(
        platform.service_url("recording", "/v1/recording-streams/")
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(body["stream_url"]) as resp:
            assert (resp.status, resp.content_type) == (200, "audio/wav")
            streamed = await resp.read()
        assert hashlib.sha256(streamed).hexdigest() == doc["sha256"]
        forged = body["stream_url"][:-3] + (
            "AAA" if not body["stream_url"].endswith("AAA") else "BBB"
        )
        async with session.get(forged) as resp:
            assert resp.status == 403
    status, _ = await api(
        nc,
        "createRecordingDownload",
        alice,
        body={"purpose": "steal"},
        tenant_id=tenant,
        recording_id=doc["_id"],
    )
    assert status == 422


async def test_legal_hold_is_for_compliance_officers_and_locked_recordings_cannot_be_deleted(
    nc: NatsClient, initech: dict[str, Any], platform: LocalPlatform
) -> None:
    tenant, doc = initech["tenant"], initech["docs"][1]
    alice = principal(tenant, api_pb2.ROLE_USER, "alice")
    target = {"tenant_id": tenant, "recording_id": doc["_id"]}
    status, _ = await api(nc, "setRecordingLegalHold", alice, body={"on": True}, **target)
    assert status == 404
    status, body = await api(
        nc,
        "setRecordingLegalHold",
        officer(tenant),
        body={"on": True, "reason": "case 7"},
        **target,
    )
    assert status == 200 and body["legal_hold"] is True
    s3 = s3_client(platform.infra)
    head = s3.head_object(
        Bucket=platform.recordings_bucket, Key=doc["object_key"], VersionId=doc["version_id"]
    )
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    status, body = await api(nc, "deleteRecording", officer(tenant), **target)
    assert status == 409 and "legal hold" in body["detail"]
    status, body = await api(
        nc, "setRecordingLegalHold", officer(tenant), body={"on": False}, **target
    )
    assert status == 200 and body["legal_hold"] is False
    # Retention still runs: refused by the API, and by the S3 server itself.
    status, body = await api(nc, "deleteRecording", officer(tenant), **target)
    assert status == 409 and "locked (COMPLIANCE) until" in body["detail"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(
            Bucket=platform.recordings_bucket, Key=doc["object_key"], VersionId=doc["version_id"]
        )
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    s3.close()
    status, _ = await api(nc, "getRecording", officer(tenant), **target)
    assert status == 200


async def test_every_access_is_in_the_audit_chain_and_tampering_is_detected(
    platform: LocalPlatform, nc: NatsClient, mongo: Mongo
) -> None:
    tenant = "audited-" + uuid.uuid4().hex[:6]
    doc = await archive(platform, nc, mongo, tenant, user_id="carol")
    carol = principal(tenant, api_pb2.ROLE_USER, "carol")
    dave = principal(tenant, api_pb2.ROLE_USER, "dave")
    target = {"tenant_id": tenant, "recording_id": doc["_id"]}
    await api(nc, "listRecordings", carol, tenant_id=tenant)
    await api(
        nc,
        "listRecordings",
        carol,
        query=[("party", "+441234567890"), ("reason", "dispute")],
        tenant_id=tenant,
    )
    await api(nc, "getRecording", carol, **target)
    await api(nc, "createRecordingDownload", carol, body={"reason": "for my records"}, **target)
    await api(nc, "createRecordingDownload", carol, body={"purpose": "playback"}, **target)
    await api(nc, "getRecording", dave, **target)  # denied, and audited as such

    status, export = await api(nc, "exportRecordingAudit", officer(tenant), tenant_id=tenant)
    assert status == 200
    trail = [(e["actor"], e["action"], e["target"], e["reason"]) for e in export["items"]]
    assert trail == [
        ("carol", "list", "recordings", ""),
        ("carol", "search", "recordings", "dispute"),
        ("carol", "view", doc["_id"], ""),
        ("carol", "download", doc["_id"], "for my records"),
        ("carol", "playback", doc["_id"], ""),
        ("dave", "view_denied", doc["_id"], ""),
        ("officer-1", "audit_export", "audit", ""),
    ]
    assert export["items"][1]["details"]["results"] == [doc["_id"]]
    assert export["verification"] == {
        "ok": True,
        "entries": 7,
        "head": export["items"][-1]["hash"],
        "broken_at_seq": None,
        "problem": None,
    }
    status, _ = await api(nc, "exportRecordingAudit", carol, tenant_id=tenant)
    assert status == 403

    # Someone with database access rewrites history: the chain no longer holds.
    audit = mongo[RECORDING_DB].audit
    await audit.update_one({"tenant_id": tenant, "seq": 4}, {"$set": {"reason": "routine"}})
    _, export = await api(nc, "exportRecordingAudit", officer(tenant), tenant_id=tenant)
    assert export["verification"]["ok"] is False
    assert export["verification"]["broken_at_seq"] == 4
    # Deleting an entry (and re-hashing nothing) is caught too.
    await audit.update_one({"tenant_id": tenant, "seq": 4}, {"$set": {"reason": "for my records"}})
    await audit.delete_one({"tenant_id": tenant, "seq": 3})
    _, export = await api(nc, "exportRecordingAudit", officer(tenant), tenant_id=tenant)
    assert (export["verification"]["ok"], export["verification"]["broken_at_seq"]) == (False, 3)


async def test_settings_validate_the_customer_key_and_the_policy_resolves_most_specific_first(
    nc: NatsClient,
) -> None:
    tenant = "settings-" + uuid.uuid4().hex[:6]
    admin = principal(tenant, api_pb2.ROLE_TENANT_ADMIN, "admin")
    status, body = await api(
        nc,
        "putRecordingSettings",
        admin,
        body={"encryption": {"mode": "customer", "public_key_pem": "not a key"}},
        tenant_id=tenant,
    )
    assert status == 422 and body["errors"][0]["field"] == "/encryption/public_key_pem"
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_pem = weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    status, body = await api(
        nc,
        "putRecordingSettings",
        admin,
        body={"encryption": {"mode": "customer", "public_key_pem": weak_pem.decode()}},
        tenant_id=tenant,
    )
    assert status == 422 and "2048" in body["errors"][0]["message"]
    status, body = await api(
        nc,
        "putRecordingSettings",
        admin,
        body={"policy": {"mode": "compliant", "retention_days": 0}},
        tenant_id=tenant,
    )
    assert status == 422 and body["errors"][0]["field"] == "/policy/retention_days"

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = {
        "encryption": {"mode": "customer", "public_key_pem": pem.decode()},
        "policy": {"mode": "on_demand", "retention_days": 365},
        "teams": {
            "legal": {"policy": {"mode": "compliant", "retention_days": 2555, "layout": "dual"}}
        },
        "users": {"ceo": {"policy": {"mode": "none"}}},
    }
    status, body = await api(nc, "putRecordingSettings", admin, body=settings, tenant_id=tenant)
    assert status == 200, body
    assert body["encryption"]["key_id"] == fingerprint(pem)

    # Optimistic concurrency: an update based on a stale read is refused.
    async def put_if(if_match: str) -> int:
        reply = await call_service(
            nc,
            "recording",
            ApiCall(
                operation="putRecordingSettings",
                principal=admin,
                path_params={"tenant_id": tenant},
                body=json.dumps(settings).encode(),
                if_match=if_match,
            ),
        )
        return reply.status

    fresh = await call_service(
        nc,
        "recording",
        ApiCall(
            operation="getRecordingSettings", principal=admin, path_params={"tenant_id": tenant}
        ),
    )
    etag = fresh.headers["ETag"]
    assert await put_if(etag) == 200
    assert await put_if(etag) == 412  # that version is gone now

    async def policy(user_id: str, team_id: str) -> recording_pb2.RecordingPolicy:
        return await bus.request(
            nc,
            subjects.RECORDING_POLICY,
            recording_pb2.RecordingPolicyRequest(
                tenant_id=tenant, user_id=user_id, team_id=team_id
            ),
            recording_pb2.RecordingPolicy,
        )

    lawyer = await policy("lawyer", "legal")
    assert (lawyer.mode, lawyer.retention_days, lawyer.layout) == (
        recording_pb2.RECORDING_MODE_COMPLIANT,
        2555,
        recording_pb2.CHANNEL_LAYOUT_DUAL,
    )
    assert (await policy("ceo", "legal")).mode == recording_pb2.RECORDING_MODE_NONE
    assert (await policy("clerk", "")).mode == recording_pb2.RECORDING_MODE_ON_DEMAND
    other = await bus.request(
        nc,
        subjects.RECORDING_POLICY,
        recording_pb2.RecordingPolicyRequest(tenant_id="nobody-" + tenant, user_id="x"),
        recording_pb2.RecordingPolicy,
    )
    assert other.mode == recording_pb2.RECORDING_MODE_NONE


async def test_a_recording_without_a_team_gets_its_users_team_and_that_teams_supervisor(
    platform: LocalPlatform, nc: NatsClient, mongo: Mongo
) -> None:
    tenant = "teams-" + uuid.uuid4().hex[:6]
    admin = principal(tenant, api_pb2.ROLE_TENANT_ADMIN, "admin")
    status, _ = await api(
        nc,
        "putRecordingSettings",
        admin,
        body={"teams": {"support": {"supervisors": ["sup-9"], "members": ["carl"]}}},
        tenant_id=tenant,
    )
    assert status == 200
    doc = await archive(platform, nc, mongo, tenant, user_id="carl", team_id="")
    assert doc["team_id"] == "support"
    supervisor = principal(tenant, api_pb2.ROLE_SUPERVISOR, "sup-9")
    _, body = await api(nc, "listRecordings", supervisor, tenant_id=tenant)
    assert ids(body) == {doc["_id"]}
    _, body = await api(
        nc, "listRecordings", officer(tenant), query=[("team_id", "support")], tenant_id=tenant
    )
    assert ids(body) == {doc["_id"]}
