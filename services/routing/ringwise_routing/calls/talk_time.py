"""How long a connected outbound call may go on (pure; times in seconds of talk time).

Billing grants talk time one quota at a time (AuthoriseReply.max_duration_s, with warn_at_s
30 s before its end). Routing asks for the next quota (`extend`) at warn_at_s — or half-way
through a grant too short to carry a warning time — and when no more is granted it plays
the warning tone then and cuts the call when the grant runs out. If billing does not
answer, the tenant's fail-open policy decides: carry on up to the platform's cap without
asking again, or stop at the time already granted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringwise.billing.v1 import credit_pb2

AuthoriseReply = credit_pb2.AuthoriseReply


def _ask_at(reply: AuthoriseReply, now_s: float) -> float:
    if reply.warn_at_s > now_s:
        return float(reply.warn_at_s)
    # A grant shorter than billing's warning time: ask half-way through what is left.
    return now_s + (reply.max_duration_s - now_s) / 2


@dataclass
class TalkTime:
    limit_s: float  # the call is cut at this second of talk time
    ask_at_s: float | None  # when to ask billing for more (None: nothing more to ask)
    warn: bool = False  # the warning tone is due now (read and cleared by the executor)

    @classmethod
    def unlimited(cls, cap_s: float) -> TalkTime:
        """Not chargeable (emergency, extension) or billing said "no limit": only the
        platform's cap applies."""
        return cls(limit_s=cap_s, ask_at_s=None)

    @classmethod
    def from_grant(cls, reply: AuthoriseReply, cap_s: float) -> TalkTime:
        if reply.max_duration_s == 0 or reply.max_duration_s >= cap_s:
            return cls.unlimited(cap_s)
        return cls(limit_s=float(reply.max_duration_s), ask_at_s=_ask_at(reply, 0.0))

    def next_deadline(self) -> float:
        return self.limit_s if self.ask_at_s is None else min(self.ask_at_s, self.limit_s)

    def extended(
        self, reply: AuthoriseReply | None, now_s: float, *, fail_open: bool, cap_s: float
    ) -> None:
        """Billing's answer to `extend` (None: no answer)."""
        if reply is None:
            if fail_open:
                self.limit_s, self.ask_at_s = cap_s, None
            else:
                self.ask_at_s, self.warn = None, True
            return
        granted = float(reply.max_duration_s)
        if reply.decision == AuthoriseReply.DECISION_ALLOW and granted > self.limit_s:
            if granted >= cap_s:
                self.limit_s, self.ask_at_s = cap_s, None
            else:
                self.limit_s, self.ask_at_s = granted, _ask_at(reply, now_s)
            return
        # Refused (or nothing more granted): the time already granted is all there is.
        if granted:
            self.limit_s = min(self.limit_s, granted)
        self.ask_at_s, self.warn = None, True
