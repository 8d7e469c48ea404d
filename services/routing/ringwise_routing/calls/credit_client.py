"""Routing's side of billing's credit authorisation (proto ringwise.billing.v1.credit):
may this outbound call go out, for how long, and give the funds back when it never connected.

A request billing does not answer in time comes back as None: the caller applies the
tenant's fail-open / fail-closed policy (plans/outbound.py AuthoriseCredit.fail_open).
"""

from __future__ import annotations

import nats.errors
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter
from ringwise.billing.v1 import credit_pb2
from ringwise.events.v1 import call_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.logs import get_logger

log = get_logger(__name__)

AuthoriseReply = credit_pb2.AuthoriseReply

AUTHORISATIONS = Counter(
    "ringwise_routing_credit_requests_total",
    "Credit authorisations asked of billing, by kind and answer",
    ["kind", "answer"],
)


class CreditClient:
    def __init__(self, nc: NatsClient, *, timeout_s: float = 1.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    async def authorise(
        self,
        *,
        tenant_id: str,
        call_id: str,
        user_id: str,
        from_number: str,
        to_number: str,
        extend: bool = False,
    ) -> AuthoriseReply | None:
        """Billing's answer, or None when it did not answer (in time, or at all)."""
        kind = "extend" if extend else "authorise"
        request = credit_pb2.AuthoriseRequest(
            tenant_id=tenant_id,
            call_id=call_id,
            direction=call_pb2.DIRECTION_OUTBOUND,
            from_number=from_number,
            to_number=to_number,
            user_id=user_id,
            extend=extend,
        )
        try:
            reply = await bus.request(
                self._nc,
                subjects.BILLING_AUTHORISE,
                request,
                AuthoriseReply,
                timeout_s=self._timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError) as exc:
            AUTHORISATIONS.labels(kind, "unavailable").inc()
            log.warning("billing_unavailable", request=kind, error=repr(exc))
            return None
        answer = "allow" if reply.decision == AuthoriseReply.DECISION_ALLOW else "deny"
        AUTHORISATIONS.labels(kind, answer).inc()
        return reply

    async def release(self, *, tenant_id: str, call_id: str) -> None:
        """Give back the funds held for a call that never connected. Best effort: an
        unreleased reservation stops counting by itself shortly after its time."""
        try:
            reply = await bus.request(
                self._nc,
                subjects.BILLING_RELEASE,
                credit_pb2.ReleaseRequest(tenant_id=tenant_id, call_id=call_id),
                credit_pb2.ReleaseReply,
                timeout_s=self._timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError) as exc:
            log.warning("credit_not_released", error=repr(exc))
            return
        log.debug("credit_released", released=reply.released)
