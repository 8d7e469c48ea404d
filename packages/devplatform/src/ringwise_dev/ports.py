"""The loopback ports of one local platform instance.

Every port is derived from the base and lies in base..base+1999, so instances with different
bases run side by side (the dev platform stays up while the tests run). All bases keep their
ports below 32768, where Linux starts handing out ephemeral client ports: a server port in
that range can be taken at random by any outgoing connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

HOST = "127.0.0.1"
# The PSTN test caller (sipp) sends from its own loopback address so Asterisk can tell the
# "pstn" trunk (identified by source IP) from phones, which register from 127.0.0.1.
PSTN_HOST = "127.0.0.2"


EPHEMERAL_PORTS_START = 32768
SPAN = 2000


@dataclass(frozen=True)
class PortPlan:
    base: int = 20000

    def __post_init__(self) -> None:
        if not self.base >= 1024 or self.base + SPAN > EPHEMERAL_PORTS_START:
            raise ValueError(f"base {self.base}: ports must lie in 1024..{EPHEMERAL_PORTS_START}")

    @property
    def sip(self) -> int:
        return self.base + 60

    @property
    def ari_http(self) -> int:
        return self.base + 88

    @property
    def rtp_start(self) -> int:
        return self.base + 1000

    @property
    def rtp_end(self) -> int:
        return self.base + 1999

    @property
    def nats(self) -> int:
        return self.base + 222

    @property
    def nats_monitor(self) -> int:
        return self.base + 223

    @property
    def redis(self) -> int:
        return self.base + 379

    @property
    def mongo(self) -> int:
        return self.base + 17

    @property
    def s3(self) -> int:
        return self.base + 333

    @property
    def s3_base(self) -> int:
        """SeaweedFS opens many ports; they are kept in base+300..base+339."""
        return self.base + 300

    @property
    def smtp(self) -> int:
        return self.base + 25

    def service_http(self, service: str) -> int:
        return self.base + 100 + SERVICE_SLOTS[service]

    @property
    def pstn_far_end(self) -> int:
        """The far end of the PSTN trunk (a sipp answering as the carrier, on PSTN_HOST):
        routing's RINGWISE_PSTN_TRUNK_ADDRESS, where outbound calls go."""
        return self.base + 70

    @property
    def phones(self) -> int:
        """First SIP port for sipp phones (each phone takes the next one)."""
        return self.base + 500


SERVICE_SLOTS = {
    "gateway": 0,
    "routing": 1,
    "directory": 2,
    "billing": 3,
    "voicemail": 4,
    "recording": 5,
    "messaging": 6,
}

DEV_PORTS = PortPlan(20000)  # ringwise-dev up
# The pytest platform. RINGWISE_TEST_PORT_BASE moves it, so two clones can run their
# service tests side by side (the other bases stay fixed: run those suites one at a time).
TEST_PORTS = PortPlan(int(os.environ.get("RINGWISE_TEST_PORT_BASE", "22000")))
HARNESS_TEST_PORTS = PortPlan(24000)  # the Asterisk/sipp harness's own tests
INFRA_TEST_PORTS = PortPlan(26000)  # the infrastructure runner's own tests
BENCH_PORTS = PortPlan(28000)  # bench/
