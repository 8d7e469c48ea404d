"""Two real billing processes answer routing's authorisations (one NATS queue group) against
one small balance: 50 simultaneous requests never overspend it."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from ringwise.billing.v1 import credit_pb2
from ringwise.events.v1 import call_pb2
from ringwise_billing.accounts.store import ACTIVE, reserved_micros
from ringwise_billing.ledger.store import TOPUP
from ringwise_billing.rating.example import JAN, example_versions
from ringwise_billing.wiring import Billing
from ringwise_dev.infra import Infra
from ringwise_dev.ports import HOST, TEST_PORTS
from ringwise_dev.proc import ManagedProcess
from ringwise_dev.services import http_ok
from ringwise_kit import bus, subjects

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Reply = credit_pb2.AuthoriseReply


def billing_process(index: int, infra: Infra, database: str) -> ManagedProcess:
    # Ports of this test's own, beside the services' slots of TEST_PORTS.
    port = TEST_PORTS.base + 180 + index
    return ManagedProcess(
        name=f"billing-{index}",
        argv=[sys.executable, "-m", "ringwise_billing.main"],
        log_path=infra.data_dir.parent / "credit-processes" / f"billing-{index}.log",
        env={
            "RINGWISE_HTTP_HOST": HOST,
            "RINGWISE_HTTP_PORT": str(port),
            "RINGWISE_NATS_URL": infra.endpoints.nats_url,
            "RINGWISE_MONGO_URL": infra.endpoints.mongo_url,
            "RINGWISE_BILLING_DB": database,
            "RINGWISE_LOG_LEVEL": "warning",
        },
        ready=lambda: http_ok(f"http://{HOST}:{port}/readyz"),
    )


async def test_fifty_authorisations_across_two_billing_processes_never_overspend(
    infra: Infra, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    run = uuid.uuid4().hex[:6]
    tenant, database = f"credit{run}", f"billing_credit_{run}"
    stores = Billing.open(mongo, database)
    await stores.ensure_indexes()
    for version in example_versions():
        await stores.tariffs.put(tenant, version)
    await stores.ledger.append_once(
        [
            {
                "_id": f"topup:{tenant}-1",
                "tenant_id": tenant,
                "kind": TOPUP,
                "amount_micros": 1_000_000,
                "currency": "EUR",
                "occurred_at": JAN,
                "booked_at": JAN,
                "applied": False,
            }
        ]
    )
    await stores.accounts.apply_pending()

    def activated(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "status": ACTIVE}

    await stores.accounts.change(tenant, activated)

    processes = [billing_process(i, infra, database) for i in range(2)]
    await asyncio.gather(*(p.start_and_wait() for p in processes))
    nc = await bus.connect(infra.endpoints.nats_url, "credit-processes-test")
    try:

        async def authorise(i: int) -> Reply:
            request = credit_pb2.AuthoriseRequest(
                tenant_id=tenant,
                call_id=f"c{i}",
                direction=call_pb2.DIRECTION_OUTBOUND,
                to_number="+441134960000",  # 0.02 per started minute
                requested_seconds=240,
            )
            return await bus.request(nc, subjects.BILLING_AUTHORISE, request, Reply, timeout_s=20)

        replies = await asyncio.gather(*(authorise(i) for i in range(50)))
    finally:
        await nc.drain()
        await asyncio.gather(*(p.stop() for p in processes))
    allowed = sorted(r.max_duration_s for r in replies if r.decision == Reply.DECISION_ALLOW)
    assert allowed == [120] + [240] * 12  # 12 x 0.08 + 0.04 = 1.00 exactly
    assert {r.reason for r in replies if r.decision == Reply.DECISION_DENY} == {
        Reply.REASON_INSUFFICIENT_FUNDS
    }
    account = await stores.accounts.get(tenant)
    assert account is not None
    assert len(account["reservations"]) == 13
    assert reserved_micros(account, datetime.now(UTC)) == 1_000_000 == account["balance_micros"]
