"""Chaos: billing SIGKILLed 5 times at random moments while 10k CDR events flow through real
NATS JetStream into the real billing process and the Mongo-wire store. Afterwards the ledger
is exactly the expected one: every call booked once, at the expected amount, and the balance
is their sum (no loss, no double charge)."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ConsumerInfo
from pymongo import AsyncMongoClient
from ringwise.billing.v1 import credit_pb2
from ringwise.events.v1 import call_pb2
from ringwise_billing.ledger.booking import call_to_rate
from ringwise_billing.ledger.store import TOPUP
from ringwise_billing.rating.example import JAN, example_book, example_versions
from ringwise_billing.rating.rater import rate_call
from ringwise_billing.wiring import Billing
from ringwise_dev.infra import Infra
from ringwise_dev.ports import TEST_PORTS
from ringwise_dev.services import service_process
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiCall, call_service, service_principal
from ringwise_kit.events import event_header, to_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

EVENTS = 10_000
KILLS = 5
DESTINATIONS = [
    "+447700900123",
    "+442079460000",
    "+441134960000",
    "+12125550100",
    "+37069912345",
    "+81312345678",
    "+448001234567",
]


def random_call(rng: random.Random, tenant: str, index: int) -> call_pb2.CallEnded:
    started = JAN + timedelta(days=rng.randint(0, 200), seconds=rng.randint(0, 86_400))
    talk_ms = rng.choice([0, rng.randint(1, 5_000), rng.randint(1, 600_000)])
    direction = rng.choice(
        [call_pb2.DIRECTION_OUTBOUND] * 6
        + [call_pb2.DIRECTION_INBOUND] * 2
        + [call_pb2.DIRECTION_INTERNAL]
    )
    call_id = f"{tenant}-{index}"
    end = started + timedelta(milliseconds=talk_ms + 2_000)
    return call_pb2.CallEnded(
        header=event_header(tenant, call_id, subjects.CALL_ENDED, end),
        direction=direction,
        from_number="+15550100",
        to_number=rng.choice(DESTINATIONS),
        started_at=to_timestamp(started),
        answered_at=to_timestamp(started + timedelta(seconds=2)) if talk_ms else None,
        ended_at=to_timestamp(end),
        billable_seconds=talk_ms // 1000,
        billable_ms=talk_ms,
        disposition=call_pb2.DISPOSITION_ANSWERED if talk_ms else call_pb2.DISPOSITION_NO_ANSWER,
    )


async def test_billing_killed_5_times_while_10k_cdrs_flow_books_each_exactly_once(
    infra: Infra, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    rng = random.Random(8)
    run = uuid.uuid4().hex[:6]
    tenants = [f"chaos{run}a", f"chaos{run}b"]
    database = f"billing_chaos_{run}"
    stores = Billing.open(mongo, database)
    await stores.ensure_indexes()
    opening = 500_000_000  # each tenant tops up 500.00 EUR first
    for tenant in tenants:
        for version in example_versions():
            await stores.tariffs.put(tenant, version)
        await stores.ledger.append_once(
            [
                {
                    "_id": f"topup:{tenant}-opening",
                    "tenant_id": tenant,
                    "kind": TOPUP,
                    "amount_micros": opening,
                    "currency": "EUR",
                    "occurred_at": JAN,
                    "booked_at": JAN,
                    "applied": False,
                }
            ]
        )
    await stores.accounts.apply_pending()
    events = [random_call(rng, tenants[i % 2], i) for i in range(EVENTS)]
    book = example_book()
    expected = {
        f"call:{e.header.call_id}": -rate_call(call_to_rate(e), book).amount_micros for e in events
    }

    log_dir = Path(os.environ.get("RINGWISE_CHAOS_LOGS", infra.data_dir.parent / "chaos"))
    billing = service_process(
        "billing",
        TEST_PORTS,
        log_dir,
        {
            "RINGWISE_NATS_URL": infra.endpoints.nats_url,
            "RINGWISE_MONGO_URL": infra.endpoints.mongo_url,
            "RINGWISE_BILLING_DB": database,
            "RINGWISE_LOG_LEVEL": "warning",
        },
    )
    nc = await bus.connect(infra.endpoints.nats_url, "chaos-test")
    js = nc.jetstream()
    await bus.ensure_stream(js, bus.CALLS)
    await billing.start_and_wait()
    started = time.monotonic()
    try:

        async def publish_all() -> None:
            for chunk in range(0, EVENTS, 250):
                acks = [
                    await bus.publish_event_async(
                        js,
                        subjects.call_event(e.header.tenant_id, subjects.CALL_ENDED),
                        e,
                        e.header.event_id,
                    )
                    for e in events[chunk : chunk + 250]
                ]
                await asyncio.wait_for(asyncio.gather(*acks), 30)
                await asyncio.sleep(0.05)
            # Routing re-publishing after JetStream's de-duplication window: new message
            # ids, same calls. The ledger, keyed by call id, must not book them again.
            for e in rng.sample(events, 300):
                await bus.publish_event(
                    js,
                    subjects.call_event(e.header.tenant_id, subjects.CALL_ENDED),
                    e,
                    e.header.event_id + ":late-copy",
                )

        publishing = asyncio.create_task(publish_all())
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            backlog = await js.consumer_info(subjects.CALLS_STREAM, "billing")
            # Killed mid-stream: events still to be booked, or in the batch in hand.
            assert backlog.num_pending + backlog.num_ack_pending > 0 or not publishing.done()
            billing.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            await billing.start_and_wait()
        await publishing

        info: ConsumerInfo | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = await js.consumer_info(subjects.CALLS_STREAM, "billing")
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.2)
        assert info is not None and info.num_pending == 0 and info.num_ack_pending == 0, info

        # The restarted process also answers the gateway and routing over NATS.
        listed = await call_service(
            nc,
            "billing",
            ApiCall(
                operation="listTariffs",
                principal=service_principal("chaos-test"),
                path_params={"tenant_id": tenants[0]},
            ),
        )
        assert listed.status == 200, listed.body
        asked = await bus.request(
            nc,
            subjects.BILLING_AUTHORISE,
            credit_pb2.AuthoriseRequest(
                tenant_id=tenants[0],
                call_id="after-chaos",
                direction=call_pb2.DIRECTION_OUTBOUND,
                to_number="+441134960000",
            ),
            credit_pb2.AuthoriseReply,
            timeout_s=5,
        )
        # Never activated (top-ups were booked directly): outbound calls are refused.
        assert asked.reason == credit_pb2.AuthoriseReply.REASON_ACCOUNT_INACTIVE
    finally:
        await billing.stop()
        await nc.drain()
    elapsed = time.monotonic() - started

    booked: dict[str, int] = {}
    for tenant in tenants:
        for entry in await stores.ledger.of_tenant(tenant, kinds=["call"]):
            assert entry["_id"] not in booked
            booked[entry["_id"]] = entry["amount_micros"]
    assert len(booked) == EVENTS
    assert booked == expected
    assert await stores.ledger.unapplied() == []
    for tenant in tenants:
        account = await stores.accounts.get(tenant)
        assert account is not None
        spent = sum(v for k, v in expected.items() if k.startswith(f"call:{tenant}-"))
        assert account["balance_micros"] == opening + spent
        assert await stores.cdrs.count(tenant) == EVENTS // 2
    print(f"chaos: {EVENTS} CDRs, {KILLS} SIGKILLs, ledger exact after {elapsed:.1f} s")
