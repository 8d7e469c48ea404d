"""Consumes CallEnded from JetStream (durable "billing"): stores each CDR and books its
rating in the ledger, each exactly once.

At-least-once delivery + writes keyed by call_id = exactly one stored CDR and one ledger
entry per call, even when billing is killed anywhere between the writes and the ack.
Calls to unassigned numbers (no tenant) are stored but not booked: nobody to charge.
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
from ringwise_billing.ledger.booking import Booker

log = get_logger(__name__)

CDRS = Counter("ringwise_billing_cdrs_total", "CDRs received", ["outcome"])
BOOKED = Counter("ringwise_billing_calls_booked_total", "Calls rated into the ledger")

CONSUMER = bus.ConsumerSpec(
    stream=subjects.CALLS_STREAM,
    durable="billing",
    filter_subjects=[subjects.call_events_of_kind(subjects.CALL_ENDED)],
)


def batch_handler(store: CdrStore, booker: Booker | None = None) -> bus.BatchHandler:
    """Stores a fetched batch of CDRs with one database write, then books their ratings
    (one ledger write, one balance update per tenant). Without a booker: CDRs only."""

    async def on_calls_ended(msgs: list[Msg]) -> list[Exception | None]:
        outcomes: list[Exception | None] = [None] * len(msgs)
        events: dict[int, call_pb2.CallEnded] = {}
        for index, msg in enumerate(msgs):
            try:
                event = decode(msg)
                if not isinstance(event, call_pb2.CallEnded):
                    raise bus.PermanentError(f"billing consumer got {type(event).__name__}")
                events[index] = event
            except Exception as exc:
                outcomes[index] = exc
        if not events:
            return outcomes
        now = datetime.now(UTC)
        try:
            stored = await store.insert_many_once(
                [cdr_document(event, now) for event in events.values()]
            )
            booked = await booker.book(events.values()) if booker is not None else set()
        except Exception as exc:
            log.warning("cdr_batch_not_stored", size=len(events), error=repr(exc))
            for index in events:
                outcomes[index] = exc
            return outcomes
        for event in events.values():
            header = event.header
            new = header.call_id in stored
            CDRS.labels("stored" if new else "duplicate").inc()
            if header.call_id in booked:
                BOOKED.inc()
            with bind_call(header.call_id, tenant_id=header.tenant_id or None):
                log.info(
                    "cdr_stored" if new else "cdr_duplicate_ignored",
                    disposition=call_pb2.Disposition.Name(event.disposition),
                    billable_seconds=event.billable_seconds,
                )
        return outcomes

    return on_calls_ended
