"""Routing service settings (RINGWISE_* environment variables)."""

from __future__ import annotations

from ringwise_kit.config import AriSettings, KitSettings, RedisSettings


class RoutingSettings(KitSettings, RedisSettings, AriSettings):
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
    # deposit_begin deadline: past it the caller gets the old "not answering" treatment.
    voicemail_timeout_s: float = 1.0
