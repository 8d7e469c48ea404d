"""The ARI executor of a click-to-dial call: ring the user's terminal first, then, once the
user answers, run the outbound plan exactly as for a call their phone placed
(calls/outbound_call.py OutboundSteps: caller ID, credit authorisation with the tenant's
fail-open policy, the trunk or an extension, talk-time cut-off, the OUTBOUND CDR).

The user's leg is created into our Stasis app with args ["callback", <call id>] (the router
finds it by its channel id, registered before it exists) and dialled for the terminal's ring
timeout. Not answered (or busy, or unreachable): nothing else rings and no event is
published (nobody was called); the status says "not answered".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

from prometheus_client import Counter
from ringwise.events.v1 import call_pb2
from ringwise_kit.ari import AriError, AriEvent, Dial, StasisStart, calls
from ringwise_kit.logs import bind_call, get_logger

from ringwise_routing.calls import policy
from ringwise_routing.calls.cdr import CallRecord
from ringwise_routing.calls.outbound_call import (
    CHANNEL_CREATE_TIMEOUT_S,
    FINAL_DIAL_STATUSES,
    OutboundEnded,
    OutboundServices,
    OutboundSteps,
)
from ringwise_routing.calls.waiting import CallerHungUp
from ringwise_routing.click_to_dial import status as states
from ringwise_routing.click_to_dial.status import CallStatusStore
from ringwise_routing.plans.model import Terminal
from ringwise_routing.plans.outbound import Connect, OutboundPlan
from ringwise_routing.profiles.source import UserReply, UserRouting

log = get_logger(__name__)

CLICK_TO_DIAL_CALLS = Counter(
    "ringwise_routing_click_to_dial_calls_total",
    "Calls placed through the API, by how the user's leg ended",
    ["outcome"],
)
# Shown on the user's phone while it rings: who they are about to call.
CALLBACK_NAME = "Ringwise call"
# The PSTN trunk's endpoint (asterisk/etc/pjsip.conf): a terminal reached through it must
# not present a number the user does not own to the carrier.
TRUNK_ENDPOINT_PREFIX = "PJSIP/pstn/"


class CallbackCall(OutboundSteps):
    def __init__(
        self,
        services: OutboundServices,
        register_channel: Callable[[str, OutboundSteps], None],
        *,
        call_id: str,
        user: UserReply,
        routing: UserRouting,
        plan: OutboundPlan,
        terminal: Terminal,
        dialled: str,
        status: CallStatusStore,
    ) -> None:
        connect = next((s for s in plan.steps if isinstance(s, Connect)), None)
        super().__init__(
            services,
            register_channel,
            call_id=call_id,
            caller_id=f"{call_id}-u",
            dialled=dialled,
            record=CallRecord(
                call_id=call_id,
                from_number=routing.outbound.smartnumber or user.smartnumber,
                to_number=connect.destination if connect is not None else dialled,
                started_at=_now(),
                tenant_id=user.tenant_id,
                user_id=user.user_id,
                device_id=terminal.terminal_id,
                direction=call_pb2.DIRECTION_OUTBOUND,
            ),
            start=None,
        )
        self._user = user
        self._routing = routing
        self._plan = plan
        self._terminal = terminal
        self._status = status
        # Nothing to report until the user answers: a call nobody took is no call.
        self._publish_cdr = False
        self._user_answered = False
        self._user_not_reached_said = False

    async def run(self) -> None:
        await super().run()
        if self._handed_over:
            await self._set_status(states.INTERNAL, internal_call_id=self.internal_call_id)
        elif self._user_answered:
            disposition = call_pb2.Disposition.Name(self.record.disposition)
            await self._set_status(states.ENDED, disposition.removeprefix("DISPOSITION_").lower())
        elif not self._user_not_reached_said:  # failed unexpectedly while ringing the user
            await self._set_status(states.FAILED)

    async def _place(self) -> None:
        with bind_call(self.call_id, tenant_id=self.record.tenant_id):
            await self._ring_user()
            self._user_answered = True
            self._publish_cdr = True
            await self._set_status(states.CONNECTING)
            await self._execute(self._routing, self._plan, self._user)

    async def _ring_user(self) -> None:
        """Ring the user's terminal for its ring timeout; returns once answered, else ends
        the call (OutboundEnded) with status "not answered" (or "failed")."""
        terminal = self._terminal
        shown = self.record.to_number
        if terminal.dial_string.startswith(TRUNK_ENDPOINT_PREFIX):
            shown = self.record.from_number
        identity = {
            "CONNECTEDLINE(num,i)": shown,
            "CONNECTEDLINE(name,i)": CALLBACK_NAME,
            "CONNECTEDLINE(pres,i)": "allowed",
        }
        try:
            await self._ari.call(
                calls.create_channel(
                    self._ari.app,
                    self._s.phones.dial_string(terminal.dial_string),
                    channel_id=self.caller_id,
                    app_args=("callback", self.call_id),
                    variables=identity,
                )
            )
            entered = await self._wait_for(
                lambda e: isinstance(e, StasisStart) and e.channel.id == self.caller_id,
                CHANNEL_CREATE_TIMEOUT_S,
            )
            if not isinstance(entered, StasisStart):
                raise AriError(504, "the user's leg never entered Stasis", "POST", "/create")
            self._start = entered
            await self._ari.dial(self.caller_id, timeout_s=terminal.ring_timeout_s)
        except (AriError, CallerHungUp) as exc:
            log.warning("click_to_dial_user_leg_failed", error=str(exc))
            await self._user_not_reached(states.FAILED, "failed")

        def dial_result(event: AriEvent) -> bool:
            if isinstance(event, Dial) and event.peer.id == self.caller_id:
                return event.dialstatus in FINAL_DIAL_STATUSES
            return False

        try:
            result = await self._wait_for(dial_result, terminal.ring_timeout_s + 5)
        except CallerHungUp:  # busy, declined or unreachable: the leg is gone
            result = None
        if not isinstance(result, Dial) or result.dialstatus != "ANSWER":
            outcome = result.dialstatus.lower() if isinstance(result, Dial) else "hung_up"
            await self._user_not_reached(states.NOT_ANSWERED, outcome)
        self._answered_caller = True
        if self._start is not None:  # an internal call handed this leg knows it is up
            up = self._start.channel.model_copy(update={"state": "Up"})
            self._start = self._start.model_copy(update={"channel": up})
        self.record.started_at = result.timestamp
        log.info("click_to_dial_user_answered", device_id=terminal.terminal_id)
        CLICK_TO_DIAL_CALLS.labels("user_answered").inc()

    async def _user_not_reached(self, status: str, outcome: str) -> NoReturn:
        log.info("click_to_dial_user_not_answered", outcome=outcome)
        CLICK_TO_DIAL_CALLS.labels(f"user_{outcome}").inc()
        with contextlib.suppress(Exception):
            await self._ari.hangup(self.caller_id, reason_code=policy.CAUSE_NORMAL_CLEARING)
        await self._set_status(status)
        self._user_not_reached_said = True
        raise OutboundEnded()

    async def _answered(self, callee_id: str) -> None:
        await super()._answered(callee_id)
        await self._set_status(states.CONNECTED)

    async def _set_status(
        self, status: str, disposition: str | None = None, *, internal_call_id: str = ""
    ) -> None:
        try:
            await self._status.update(
                self.record.tenant_id,
                self.call_id,
                status,
                disposition,
                internal_call_id=internal_call_id,
            )
        except Exception as exc:  # the call goes on; only GET shows an older status
            log.warning("click_to_dial_status_not_saved", status=status, error=repr(exc))


def _now() -> datetime:
    return datetime.now(UTC)
