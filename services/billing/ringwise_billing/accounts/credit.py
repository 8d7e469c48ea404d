"""Credit authorisation for routing: may this call go out, and for how long?

Inbound and internal calls are never refused here (blocked accounts keep receiving calls).
An outbound call is priced by the tariff in force now; it is allowed for the longest talk
time that what is left of the balance covers (balance minus other calls' reservations, at
most one quota or the time asked for), and that time's price is reserved, in one
compare-and-set on the account, so concurrent calls never overspend. Asking again for the
same call answers the same (idempotent on call id); asking with `extend` grants the next
quota as far as the balance goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ringwise.billing.v1 import credit_pb2
from ringwise.events.v1 import call_pb2

from ringwise_billing.accounts.store import (
    ACTIVE,
    AccountStore,
    reserved_micros,
)
from ringwise_billing.rating.money import from_micros
from ringwise_billing.rating.rater import affordable_seconds
from ringwise_billing.rating.tariff import Increment, Rate
from ringwise_billing.tariffs.store import TariffStore

Reply = credit_pb2.AuthoriseReply
Doc = dict[str, Any]

# What routing plays before refusing (media URIs, comma-separated, as in RoutingDecision.prompt;
# each is a sound the platform's Asterisk has: tests/e2e/test_billing_rating.py checks).
# "I'm sorry. Please try your call again later." / "...cannot be completed as dialed."
PROMPT_BLOCKED = "sound:im-sorry,sound:please-try-call-later"
PROMPT_INSUFFICIENT = PROMPT_BLOCKED
PROMPT_NOT_ALLOWED = "sound:im-sorry,sound:cannot-complete-as-dialed"
# Played by routing when the authorised time is about to run out and no more was granted.
WARNING_TONE = "sound:beep"
ALL_PROMPTS = (PROMPT_BLOCKED, PROMPT_INSUFFICIENT, PROMPT_NOT_ALLOWED, WARNING_TONE)


@dataclass(frozen=True)
class CreditPolicy:
    max_call_s: int = 4 * 3600  # the longest call, whatever the balance
    # Talk time granted (and funds held) at a time; a longer call asks for more (extend), so
    # one long call does not hold the whole balance away from the others.
    quota_s: int = 600
    warn_before_s: int = 30  # warning tone this long before the authorised time runs out
    reservation_grace_s: int = 120  # a reservation outlives its call by this much


def deny(reason: Reply.Reason.ValueType, prompt: str, currency: str = "") -> Reply:
    return Reply(decision=Reply.DECISION_DENY, reason=reason, prompt=prompt, currency=currency)


class CreditControl:
    def __init__(
        self,
        accounts: AccountStore,
        tariffs: TariffStore,
        policy: CreditPolicy | None = None,
    ) -> None:
        self.accounts = accounts
        self.tariffs = tariffs
        self.policy = policy or CreditPolicy()

    async def authorise(
        self, req: credit_pb2.AuthoriseRequest, now: datetime | None = None
    ) -> Reply:
        now = now or datetime.now(UTC)
        if req.direction in (call_pb2.DIRECTION_INBOUND, call_pb2.DIRECTION_INTERNAL):
            return Reply(decision=Reply.DECISION_ALLOW, reason=Reply.REASON_NOT_CHARGEABLE)
        if not req.tenant_id or not req.call_id:
            raise ValueError("tenant_id and call_id are required")
        account = await self.accounts.get(req.tenant_id)
        if account is None or account.get("status") != ACTIVE:
            return deny(Reply.REASON_ACCOUNT_INACTIVE, PROMPT_BLOCKED)
        currency = str(account.get("currency", ""))
        own = _reservation_of(account, req.call_id, now)
        if own is not None:
            if req.extend:
                return await self._extend(req, now, currency)
            return self._allowed(own, account, now, currency)
        if int(account.get("balance_micros", 0)) <= 0:
            return deny(Reply.REASON_BLOCKED_UNPAID, PROMPT_BLOCKED, currency)
        version = (await self.tariffs.book(req.tenant_id)).in_force(now)
        if version is None:
            return deny(Reply.REASON_NO_TARIFF, PROMPT_NOT_ALLOWED, currency)
        rate = version.outbound_rate(req.to_number)
        if rate is None:
            return deny(Reply.REASON_NO_RATE, PROMPT_NOT_ALLOWED, currency)
        cap = min(self.policy.max_call_s, self.policy.quota_s)
        if req.requested_seconds:
            cap = min(cap, int(req.requested_seconds))
        outcome: dict[str, Any] = {}

        def reserve(doc: Doc) -> Doc | None:
            outcome.clear()
            existing = _reservation_of(doc, req.call_id, now)
            if existing is not None:  # a concurrent retry of this very request won
                outcome["reservation"] = existing
                return None
            if int(doc.get("balance_micros", 0)) <= 0 or doc.get("status") != ACTIVE:
                outcome["deny"] = Reply.REASON_BLOCKED_UNPAID
                return None
            available = int(doc.get("balance_micros", 0)) - reserved_micros(doc, now)
            seconds = affordable_seconds(rate, available, cap)
            if seconds <= 0:
                outcome["deny"] = Reply.REASON_INSUFFICIENT_FUNDS
                return None
            reservation = {
                "call_id": req.call_id,
                "amount_micros": rate.cost_micros(seconds),
                "seconds": seconds,
                "free": rate.per_minute_micros == 0 and rate.connection_fee_micros == 0,
                # The rate granted, so an extension prices the whole call the same way.
                "rate": rate_doc(rate),
                "reserved_at": now,
                "expires_at": now + timedelta(seconds=seconds + self.policy.reservation_grace_s),
            }
            outcome["reservation"] = reservation
            doc["reservations"] = [
                r for r in doc.get("reservations", []) if r["expires_at"] > now
            ] + [reservation]
            return doc

        updated = await self.accounts.change(req.tenant_id, reserve, create=False)
        if "deny" in outcome:
            reason = outcome["deny"]
            prompt = (
                PROMPT_BLOCKED if reason == Reply.REASON_BLOCKED_UNPAID else PROMPT_INSUFFICIENT
            )
            return deny(reason, prompt, currency)
        return self._allowed(outcome["reservation"], updated or account, now, currency)

    async def _extend(
        self, req: credit_pb2.AuthoriseRequest, now: datetime, currency: str
    ) -> Reply:
        """The next quota for a call in progress: the reservation grows to the longest total
        talk time (up to one more quota and the cap) that the rest of the balance covers."""
        outcome: dict[str, Any] = {}

        def extend(doc: Doc) -> Doc | None:
            outcome.clear()
            own = _reservation_of(doc, req.call_id, now)
            if own is None:
                outcome["gone"] = True
                return None
            rate = rate_from_doc(own["rate"])
            granted = int(own["seconds"])
            available = int(doc.get("balance_micros", 0)) - reserved_micros(
                doc, now, except_call=req.call_id
            )
            cap = min(granted + self.policy.quota_s, self.policy.max_call_s)
            total = affordable_seconds(rate, available, cap)
            if total <= granted:
                outcome["refused"] = own
                return None
            own.update(
                seconds=total,
                amount_micros=rate.cost_micros(total),
                expires_at=own["reserved_at"]
                + timedelta(seconds=total + self.policy.reservation_grace_s),
            )
            outcome["reservation"] = own
            doc["reservations"] = [
                own if r["call_id"] == req.call_id else r
                for r in doc.get("reservations", [])
                if r["expires_at"] > now
            ]
            return doc

        updated = await self.accounts.change(req.tenant_id, extend, create=False)
        if "gone" in outcome:  # settled or expired meanwhile: authorise afresh
            return await self.authorise(
                credit_pb2.AuthoriseRequest(
                    tenant_id=req.tenant_id,
                    call_id=req.call_id,
                    direction=req.direction,
                    to_number=req.to_number,
                    requested_seconds=req.requested_seconds,
                ),
                now,
            )
        if "refused" in outcome:
            refused = deny(Reply.REASON_INSUFFICIENT_FUNDS, PROMPT_INSUFFICIENT, currency)
            refused.max_duration_s = int(outcome["refused"]["seconds"])
            return refused
        return self._allowed(outcome["reservation"], updated or {}, now, currency)

    def _allowed(self, reservation: Doc, account: Doc, now: datetime, currency: str) -> Reply:
        seconds = int(reservation["seconds"])
        available = int(account.get("balance_micros", 0)) - reserved_micros(account, now)
        return Reply(
            decision=Reply.DECISION_ALLOW,
            reason=Reply.REASON_FREE_DESTINATION
            if reservation.get("free")
            else Reply.REASON_FUNDS_RESERVED,
            max_duration_s=seconds,
            warn_at_s=max(0, seconds - self.policy.warn_before_s)
            if seconds > self.policy.warn_before_s
            else 0,
            reserved_amount=str(from_micros(int(reservation["amount_micros"]))),
            currency=currency,
            available_amount=str(from_micros(available)),
        )

    async def release(self, req: credit_pb2.ReleaseRequest) -> credit_pb2.ReleaseReply:
        released = await self.accounts.release(req.tenant_id, req.call_id)
        return credit_pb2.ReleaseReply(released=released)


def rate_doc(rate: Rate) -> Doc:
    return {
        "prefix": rate.prefix,
        "per_minute": str(rate.per_minute),
        "connection_fee": str(rate.connection_fee),
        "increment": str(rate.increment),
        "minimum_s": rate.minimum_s,
    }


def rate_from_doc(doc: Doc) -> Rate:
    return Rate(
        doc["prefix"],
        Decimal(doc["per_minute"]),
        Decimal(doc["connection_fee"]),
        Increment.parse(doc["increment"]),
        int(doc["minimum_s"]),
    )


def _reservation_of(account: Doc, call_id: str, now: datetime) -> Doc | None:
    for reservation in account.get("reservations", []):
        if reservation["call_id"] == call_id and reservation["expires_at"] > now:
            return dict(reservation)
    return None
