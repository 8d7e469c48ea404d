"""Consumes CallEnded from JetStream (durable "billing") and stores each CDR exactly once.

At-least-once delivery + insert keyed by call_id = exactly one stored CDR per call, even
when billing is killed between the insert and the ack.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.msg import Msg
from prometheus_client import Counter
from ringwise.events.v1 import call_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.events import decode
from ringwise_kit.logs import bind_call, get_logger

from ringwise_billing.cdrs.store import CdrStore, cdr_document

log = get_logger(__name__)

CDRS = Counter("ringwise_billing_cdrs_total", "CDRs received", ["outcome"])

CONSUMER = bus.ConsumerSpec(
    stream=subjects.CALLS_STREAM,
    durable="billing",
    filter_subjects=[subjects.call_events_of_kind(subjects.CALL_ENDED)],
)


def handler(store: CdrStore) -> bus.Handler:
    async def on_call_ended(msg: Msg) -> None:
        event = decode(msg)
        if not isinstance(event, call_pb2.CallEnded):
            raise bus.PermanentError(f"billing consumer got {type(event).__name__}")
        header = event.header
        with bind_call(header.call_id, tenant_id=header.tenant_id or None):
            stored = await store.insert_once(cdr_document(event, datetime.now(UTC)))
            CDRS.labels("stored" if stored else "duplicate").inc()
            log.info(
                "cdr_stored" if stored else "cdr_duplicate_ignored",
                disposition=call_pb2.Disposition.Name(event.disposition),
                billable_seconds=event.billable_seconds,
            )

    return on_call_ended
