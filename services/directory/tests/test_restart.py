"""The directory killed (SIGKILL) and restarted while writes flow: every acknowledged write is
there afterwards, with its history entry."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise_dev.infra import Infra
from ringwise_dev.ports import HOST, TEST_PORTS
from ringwise_dev.proc import ManagedProcess
from ringwise_kit.api import ApiCall, call_service, new_request_id

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ADMIN = api_pb2.ROLE_TENANT_ADMIN
_runs = itertools.count()


def directory_process(infra: Infra, db: str, log_dir: Path) -> ManagedProcess:
    port = TEST_PORTS.service_http("directory")

    async def ready() -> bool:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session,
            session.get(f"http://{HOST}:{port}/readyz") as resp,
        ):
            return resp.status == 200

    return ManagedProcess(
        name="directory",
        argv=[sys.executable, "-m", "ringwise_directory.main"],
        log_path=log_dir / "directory-restart.log",
        env={
            "RINGWISE_NATS_URL": infra.endpoints.nats_url,
            "RINGWISE_MONGO_URL": infra.endpoints.mongo_url,
            "RINGWISE_DIRECTORY_DB": db,
            "RINGWISE_HTTP_HOST": HOST,
            "RINGWISE_HTTP_PORT": str(port),
            "RINGWISE_PASSWORD_HASH_MEMORY_KIB": "1024",
            "RINGWISE_PASSWORD_HASH_TIME_COST": "1",
        },
        ready=ready,
    )


async def send(
    nc: NatsClient, principal: api_pb2.Principal, operation: str, body: Any, **path: str
) -> api_pb2.ApiReply:
    call = ApiCall(
        operation=operation,
        principal=principal,
        path_params=path,
        body=json.dumps(body).encode() if body is not None else b"",
        request_id=new_request_id(),
    )
    return await call_service(nc, "directory", call, timeout_s=2.0)


async def test_acknowledged_writes_survive_a_sigkill_and_restart(
    infra: Infra, nc: NatsClient, tmp_path: Path
) -> None:
    db_name = f"directory_restart_{next(_runs)}"
    proc = directory_process(infra, db_name, tmp_path)
    await proc.start_and_wait()
    try:
        operator = api_pb2.Principal(subject_id="op", role=api_pb2.ROLE_OPERATOR_ADMIN)
        created = await send(
            nc,
            operator,
            "createTenant",
            {"tenant_id": "restart-co", "name": "Restart", "country": "GB", "time_zone": "UTC"},
        )
        assert created.status == 201, created.body
        admin = api_pb2.Principal(subject_id="admin", tenant_id="restart-co", role=ADMIN)

        acked: list[tuple[str, str]] = []  # (kind, id)
        refused = 0
        stop = asyncio.Event()

        async def writer(worker: int) -> None:
            nonlocal refused
            for n in itertools.count():
                if stop.is_set():
                    return
                try:
                    if n % 3 == 0:
                        reply = await send(
                            nc,
                            admin,
                            "createUser",
                            {"email": f"w{worker}-{n}@restart.example", "name": f"W{worker} {n}"},
                            tenant_id="restart-co",
                        )
                        kind, key = "user", "user_id"
                    else:
                        reply = await send(
                            nc,
                            admin,
                            "createContact",
                            {"scope": "tenant", "name": f"Contact {worker}-{n}"},
                            tenant_id="restart-co",
                        )
                        kind, key = "contact", "contact_id"
                except (NatsTimeout, NoRespondersError):
                    refused += 1  # no answer: not acknowledged, so nothing is promised
                    await asyncio.sleep(0.05)
                    continue
                assert reply.status == 201, reply.body
                acked.append((kind, json.loads(reply.body)[key]))

        writers = [asyncio.create_task(writer(w)) for w in range(4)]
        await asyncio.sleep(1.5)
        before_kill = len(acked)
        proc.kill()
        await asyncio.sleep(0.3)
        await proc.start_and_wait()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*writers)

        print(
            f"acknowledged writes: {before_kill} before the kill, {len(acked)} in all; "
            f"{refused} unanswered"
        )
        assert before_kill > 10, "writes were flowing before the kill"
        assert len(acked) > before_kill, "writes flowed again after the restart"
        assert refused > 0, "some requests met the dead service"

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.endpoints.mongo_url)
        try:
            db = client[db_name]
            users = {
                d["user_id"] for d in await db.users.find({"tenant_id": "restart-co"}).to_list()
            }
            contacts = {
                d["contact_id"]
                for d in await db.contacts.find({"tenant_id": "restart-co"}).to_list()
            }
            audited = {
                d["resource_id"]
                for d in await db.history.find(
                    {
                        "tenant_id": "restart-co",
                        "action": {"$in": ["user.created", "contact.created"]},
                    }
                ).to_list()
            }
            credentials = {
                d["user_id"]
                for d in await db.credentials.find({"tenant_id": "restart-co"}).to_list()
            }
        finally:
            await client.close()
        missing = [(k, i) for k, i in acked if i not in (users if k == "user" else contacts)]
        assert missing == []
        assert [i for _, i in acked if i not in audited] == []
        assert [i for k, i in acked if k == "user" and i not in credentials] == []
        # And the restarted service serves them.
        for kind, record_id in acked[:: max(1, len(acked) // 10)]:
            operation = "getUser" if kind == "user" else "getContact"
            param = "user_id" if kind == "user" else "contact_id"
            reply = await send(
                nc, admin, operation, None, tenant_id="restart-co", **{param: record_id}
            )
            assert reply.status == 200
    finally:
        with contextlib.suppress(Exception):
            await proc.stop()
