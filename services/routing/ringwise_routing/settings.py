"""Routing service settings (RINGWISE_* environment variables)."""

from __future__ import annotations

from ringwise_kit.config import AriSettings, KitSettings, MongoSettings, RedisSettings


class RoutingSettings(KitSettings, RedisSettings, MongoSettings, AriSettings):
    service_name: str = "routing"
    http_port: int = 9101
    directory_timeout_s: float = 1.0
    number_cache_ttl_s: int = 300
    number_negative_cache_ttl_s: int = 30
    # In-process copy in front of Redis (0 turns it off); dropped on number_changed too.
    number_local_cache_ttl_s: float = 5.0
    # Live PJSIP provisioning of directory's SIP devices (see provisioning/).
    pjsip_resync_s: float = 300.0
    # Keep on behind NAT; the local platform turns it off (its phones register for a sipp
    # answering on another port).
    pjsip_rewrite_contact: bool = True
    pjsip_transport: str = "transport-udp"
    # host:port of the SIP edge's phone socket (Kubernetes: the sip-edge-internal Service,
    # 5091): phones are dialled through the edge's location table, so every Asterisk pod
    # reaches a phone registered with another (provisioning/edge.py). Empty: PJSIP/<user>.
    phones_via_edge: str = ""
    # host:port of the PSTN carrier's SIP side: outbound calls, external terminals (mobile,
    # home) and redirects to external numbers are dialled there through the "pstn" endpoint.
    # Empty: no outbound trunk; such terminals are skipped and outbound PSTN calls refused.
    pstn_trunk_address: str = ""
    # Calls placed by phones (calls/outbound_call.py): billing's credit authorisation
    # deadline (past it the tenant's fail-open policy decides), how long the far end may
    # ring, and the longest call when billing sets no limit (or does not answer, fail-open).
    billing_timeout_s: float = 1.0
    outbound_ring_timeout_s: int = 60
    outbound_max_call_s: int = 4 * 3600
    # Users' routing profiles and the tenants' routing policies (profiles/store.py).
    routing_db: str = "ringwise_routing"
    # How long an instance trusts its in-memory copy of a profile if a change notice is lost.
    profile_cache_ttl_s: float = 30.0
    # deposit_begin deadline: past it the caller gets the old "not answering" treatment.
    voicemail_timeout_s: float = 1.0

    def trunk_dial(self, number: str) -> str:
        """Asterisk dial string for a PSTN number ("" when no trunk is configured)."""
        if not self.pstn_trunk_address:
            return ""
        return f"PJSIP/pstn/sip:{number}@{self.pstn_trunk_address}"
