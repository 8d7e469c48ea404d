"""Where the mailbox's "call back the sender" dials (table-driven): an internal sender at
their first reachable device, anyone else through the PSTN trunk, nothing without one."""

from __future__ import annotations

from typing import Any, cast

import pytest
from ringwise.directory.v1 import resolve_pb2
from ringwise_routing.calls.voicemail_step import VoicemailStep
from ringwise_routing.calls.waiting import CallerHungUp
from ringwise_routing.settings import RoutingSettings

TRUNK = RoutingSettings(pstn_trunk_address="203.0.113.9:5060")
NO_TRUNK = RoutingSettings(pstn_trunk_address="")


def step(settings: RoutingSettings) -> VoicemailStep:
    # call_back_target uses neither NATS nor ARI.
    return VoicemailStep(
        cast(Any, None), cast(Any, None), CallerHungUp, trunk_dial=settings.trunk_dial
    )


def user(*devices: tuple[str, str, str]) -> resolve_pb2.ResolveNumberReply:
    return resolve_pb2.ResolveNumberReply(
        status=resolve_pb2.ResolveNumberReply.STATUS_FOUND,
        tenant_id="acme",
        user_id="alice",
        devices=[
            resolve_pb2.Device(device_id=f"d{i}", kind=kind, dial_string=dial, number=number)
            for i, (kind, dial, number) in enumerate(devices)
        ],
    )


DESK = ("sip", "PJSIP/rwdesk", "")
MOBILE = ("external", "", "+447700900123")


@pytest.mark.parametrize(
    ("settings", "sender", "caller_number", "expected"),
    [
        # A colleague: their first SIP device, trunk or not.
        (NO_TRUNK, user(DESK, MOBILE), "+15550100", "PJSIP/rwdesk"),
        (TRUNK, user(DESK, MOBILE), "+15550100", "PJSIP/rwdesk"),
        # A colleague with only a mobile: through the trunk, if there is one.
        (TRUNK, user(MOBILE), "", "PJSIP/pstn/sip:+447700900123@203.0.113.9:5060"),
        (NO_TRUNK, user(MOBILE), "", ""),
        (TRUNK, user(), "+15550100", ""),
        # Anyone else: their number through the trunk.
        (TRUNK, None, "+441632960009", "PJSIP/pstn/sip:+441632960009@203.0.113.9:5060"),
        (TRUNK, None, "441632960009", "PJSIP/pstn/sip:+441632960009@203.0.113.9:5060"),
        (NO_TRUNK, None, "+441632960009", ""),
        # Withheld or unusable numbers: nothing to dial.
        (TRUNK, None, "anonymous", ""),
        (TRUNK, None, "", ""),
        (TRUNK, None, "+44 16;x", ""),
    ],
)
def test_the_call_back_dials_the_sender_where_they_can_be_reached(
    settings: RoutingSettings,
    sender: resolve_pb2.ResolveNumberReply | None,
    caller_number: str,
    expected: str,
) -> None:
    assert step(settings).call_back_target(sender, caller_number) == expected
