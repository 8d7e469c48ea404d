"""Calls that another routing instance started and could not finish (it restarted or
crashed): found in Redis (call_state.py) at reconcile.

- A conversation still bridged is adopted: this instance waits for either party to hang up,
  ends the other and the bridge, and publishes the CDR with the answer time stored when the
  call was bridged.
- Anything else (ringing legs, a caller waiting, half a conversation) is ended now: every
  channel left is hung up (the caller with a retryable cause), and the CDR says what happened
  (CallMissed too when the user never answered).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from ringwise.events.v1 import call_pb2
from ringwise_kit import subjects
from ringwise_kit.ari import (
    AriClient,
    AriEvent,
    Channel,
    StasisEnd,
    calls,
)
from ringwise_kit.events import event_header
from ringwise_kit.logs import bind_call, get_logger

from ringwise_routing.calls import policy
from ringwise_routing.calls.call_state import CallStateStore, StoredCall
from ringwise_routing.calls.cdr import call_ended
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.waiting import HANGUP_EVENTS, EventInbox

log = get_logger(__name__)


class AdoptedCall:
    """A bridged conversation taken over from an earlier instance: waits for its end."""

    def __init__(
        self,
        stored: StoredCall,
        ari: AriClient,
        publisher: EventPublisher,
        store: CallStateStore,
    ) -> None:
        self.stored = stored
        self.call_id = stored.record.call_id
        self.caller_id = stored.caller_id
        self.channels: set[str] = set(stored.channels)
        self._ari = ari
        self._publisher = publisher
        self._store = store
        self._events = EventInbox()

    def feed(self, event: AriEvent) -> None:
        self._events.put_nowait(event)

    def gone_during_outage(self) -> None:
        self.feed(
            StasisEnd(
                type="StasisEnd",
                timestamp=datetime.now(UTC),
                channel=Channel(id=self.caller_id),
            )
        )

    async def run(self) -> None:
        record = self.stored.record
        with bind_call(self.call_id, tenant_id=record.tenant_id or None):
            log.info("call_adopted", bridge_id=self.stored.bridge_id)
            while True:
                event = await self._events.get()
                if isinstance(event, HANGUP_EVENTS) and event.channel.id in self.channels:
                    break
            gone = event.channel.id
            record.ended_at = event.timestamp
            record.hangup_by = "caller" if gone == self.caller_id else "callee"
            record.hangup_cause = getattr(event, "cause", 0) or policy.CAUSE_NORMAL_CLEARING
            others = [c for c in self.channels if c != gone]
            with contextlib.suppress(Exception):
                await self._ari.run_all(
                    *(calls.hangup(c, reason_code=record.hangup_cause) for c in others),
                    *(
                        [calls.destroy_bridge(self.stored.bridge_id)]
                        if self.stored.bridge_id
                        else []
                    ),
                )
            record.disposition = call_pb2.DISPOSITION_ANSWERED
            self._publisher.publish(call_ended(record))
            log.info("call_ended", disposition="DISPOSITION_ANSWERED", hangup_by=record.hangup_by)
            self._store.forget(self.call_id)


async def end_orphaned(
    stored: StoredCall,
    present: set[str],
    ari: AriClient,
    publisher: EventPublisher,
    store: CallStateStore,
) -> None:
    """A call of an earlier instance that cannot go on: hang up what is left, publish its end."""
    record = stored.record
    now = datetime.now(UTC)
    caller_present = stored.caller_id in present
    with bind_call(record.call_id, tenant_id=record.tenant_id or None):
        left = [c for c in stored.channels if c in present]
        for channel_id in left:
            cause = policy.CAUSE_PLATFORM_FAILURE if channel_id == stored.caller_id else None
            await ari.hangup(channel_id, reason_code=cause)
        if stored.bridge_id:
            await ari.destroy_bridge(stored.bridge_id)
        record.ended_at = now
        if record.answered_at is not None:
            # Half a conversation: it ended while nobody was watching; the end time is ours.
            record.disposition = call_pb2.DISPOSITION_ANSWERED
            record.hangup_by = "platform" if caller_present else "caller"
            record.hangup_cause = policy.CAUSE_NORMAL_CLEARING
        else:
            if caller_present:
                record.disposition = call_pb2.DISPOSITION_FAILED
                record.hangup_by = "platform"
                record.hangup_cause = policy.CAUSE_PLATFORM_FAILURE
            else:
                record.disposition = call_pb2.DISPOSITION_CANCELLED
                record.hangup_by = "caller"
                record.hangup_cause = policy.CAUSE_NORMAL_CLEARING
            if record.user_id:
                publisher.publish(
                    call_pb2.CallMissed(
                        header=event_header(
                            record.tenant_id, record.call_id, subjects.CALL_MISSED, now
                        ),
                        user_id=record.user_id,
                        caller_number=record.from_number,
                        reason="caller_hung_up" if not caller_present else "no_answer",
                    )
                )
        publisher.publish(call_ended(record))
        log.warning(
            "orphaned_call_ended",
            channels_hung_up=len(left),
            disposition=call_pb2.Disposition.Name(record.disposition),
        )
        store.forget(record.call_id)


def adoptable(stored: StoredCall, present: set[str], bridged: Callable[[str], bool]) -> bool:
    """Bridged, and both the caller and a callee are still in the bridge."""
    if stored.bridge_id is None or stored.caller_id not in present:
        return False
    return any(leg in present and bridged(leg) for leg in stored.legs) and bridged(stored.caller_id)
