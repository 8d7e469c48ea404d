"""Dialling phones through the SIP edge's location service (Kubernetes, several Asterisk pods).

A phone registers through the edge with one Asterisk pod; on every other pod
`PJSIP/<sip_username>` has no contact. With RINGWISE_PHONES_VIA_EDGE=<host:port> (the edge's
phone socket) routing dials a phone as `PJSIP/<sip_username>/sip:<sip_username>@<edge>`: the
endpoint's codecs and settings apply, the request goes to the edge, and the edge sends it to
the phone's registered address (its location table, filled from the pods' 200s to
REGISTERs). Only endpoints this instance provisioned as phones are rewritten: a customer's
static-IP trunk (also `PJSIP/<sip_username>`) is reached at its own address from every pod,
and before the first provisioning pass a phone is dialled as before. Empty (the default, and
the local platform): nothing is rewritten.
"""

from __future__ import annotations

import re

_ENDPOINT_ONLY = re.compile(r"^PJSIP/([A-Za-z0-9_.-]{1,80})$")


class PhonesViaEdge:
    def __init__(self, edge: str = "") -> None:
        self.edge = edge
        self._phones: set[str] = set()

    def phone_provisioned(self, sip_username: str) -> None:
        self._phones.add(sip_username)

    def not_a_phone(self, sip_username: str) -> None:
        """A trunk, or a device removed: dialled (if at all) as its dial string says."""
        self._phones.discard(sip_username)

    def dial_string(self, dial_string: str) -> str:
        """What Asterisk dials for dial_string: a provisioned phone's `PJSIP/<name>` through
        the edge when one is configured, anything else unchanged."""
        if not self.edge:
            return dial_string
        match = _ENDPOINT_ONLY.match(dial_string)
        if match is None or match.group(1) not in self._phones:
            return dial_string
        name = match.group(1)
        return f"PJSIP/{name}/sip:{name}@{self.edge}"
