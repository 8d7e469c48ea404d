"""Message waiting: the mailbox's counts go to the user's phones as RFC 3842 NOTIFYs.

Debian's Asterisk has no ARI mailboxes (res_mwi_external is not built), so the counts travel
through ARI another way: an originated Local channel runs the dialplan context ringwise-mwi
(asterisk/etc/extensions.conf), whose PJSIPNotify sends the message-summary NOTIFY to each
target (a PJSIP endpoint name: each of its registered contacts; or a SIP URI). The counts
themselves are sent, never increments, so a repeat after a crash is harmless.

In Kubernetes the pod the NOTIFY leaves from may not hold the phone's registration: with the
SIP edge's phone socket given (RINGWISE_PHONES_VIA_EDGE), an endpoint without contacts on that
pod is notified at sip:<endpoint>@<edge>, which the edge's location table takes to the phone.
A trunk's static contact is on every pod, so it never needs the edge.
"""

from __future__ import annotations

import re
import uuid
from typing import Protocol

from ringwise_kit.logs import get_logger

log = get_logger(__name__)

MWI_CONTEXT = "ringwise-mwi"
LOCAL_ENDPOINT = f"Local/notify@{MWI_CONTEXT}/n"
# A PJSIP endpoint id, or a SIP URI (no spaces or commas: they would split the app's args).
_TARGET = re.compile(r"^(?:[A-Za-z0-9_.-]{1,80}|sips?:[^\s,()&]{3,200})$")


class Originator(Protocol):
    async def originate_to_dialplan(
        self,
        endpoint: str,
        *,
        context: str,
        extension: str,
        channel_id: str,
        variables: dict[str, str] | None = None,
        priority: int = 1,
        timeout_s: int = 10,
    ) -> None: ...


def valid_target(target: str) -> bool:
    return bool(_TARGET.match(target))


def notify_variables(
    target: str, account: str, new: int, old: int, urgent: int, phones_via_edge: str = ""
) -> dict[str, str]:
    return {
        # PJSIPNotify takes URIs only: the dialplan sends an endpoint's NOTIFY to each of its
        # registered contacts.
        "MWI_TO": target if target.startswith(("sip:", "sips:")) else f"PJSIP/{target}",
        "MWI_WAITING": "yes" if new else "no",
        "MWI_ACCOUNT": account,
        "MWI_NEW": str(new),
        "MWI_OLD": str(old),
        "MWI_NEW_URGENT": str(urgent),
        # An endpoint with no contact on the sending pod: notified through the edge.
        "MWI_EDGE": phones_via_edge,
    }


async def send_counts(
    ari: Originator,
    targets: tuple[str, ...],
    account: str,
    *,
    new: int,
    old: int,
    urgent: int,
    phones_via_edge: str = "",
) -> None:
    for target in targets:
        if not valid_target(target):
            log.warning("mwi_target_skipped", target=target)
            continue
        await ari.originate_to_dialplan(
            LOCAL_ENDPOINT,
            context=MWI_CONTEXT,
            extension="done",
            channel_id=f"mwi-{uuid.uuid4().hex}",
            variables=notify_variables(target, account, new, old, urgent, phones_via_edge),
        )
