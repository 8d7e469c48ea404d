"""Directory data for the demo call and the tests: one tenant, users with sipp desk phones.

Phone ports are derived from the instance's PortPlan, so the dev platform and the tests can
run side by side. Which sipp scenario answers on each port is up to the caller (tests start a
busy phone on bob's port, a never-answering one on carol's, and nothing on dave's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ringwise_dev.ports import HOST, PortPlan

TENANT = "acme"
UNKNOWN_NUMBER = "+15559999"


class Person:
    def __init__(self, user_id: str, name: str, number: str, slot: int, ring_timeout_s: int):
        self.user_id = user_id
        self.name = name
        self.number = number
        self.slot = slot
        self.ring_timeout_s = ring_timeout_s

    @property
    def device_id(self) -> str:
        return f"{self.user_id}-desk"

    def phone_port(self, ports: PortPlan) -> int:
        return ports.phones + self.slot


ALICE = Person("alice", "Alice Archer", "+15550100", 0, 20)  # answers
BOB = Person("bob", "Bob Baker", "+15550101", 1, 20)  # busy in tests
CAROL = Person("carol", "Carol Cole", "+15550102", 2, 5)  # never answers
DAVE = Person("dave", "Dave Dunn", "+15550103", 3, 10)  # no phone listening
BENCH = Person("bench", "Bench Phone", "+15550199", 9, 20)  # benchmark target
# Benchmark path (c): the same phone, reached through a stored 3-step plan (bench/call_paths.py).
BENCH_PLAN = Person("benchplan", "Bench Plan", "+15550198", 9, 20)
PEOPLE = (ALICE, BOB, CAROL, DAVE, BENCH, BENCH_PLAN)


def dial_string(person: Person, ports: PortPlan) -> str:
    """A static-contact desk phone reached through the generic "phones" endpoint."""
    return f"PJSIP/phones/sip:{person.device_id}@{HOST}:{person.phone_port(ports)}"


def directory_fixture(ports: PortPlan) -> dict[str, list[dict[str, Any]]]:
    return {
        "tenants": [{"tenant_id": TENANT, "name": "Acme Ltd", "time_zone": "Europe/London"}],
        "users": [
            {
                "tenant_id": TENANT,
                "user_id": p.user_id,
                "name": p.name,
                "ring_timeout_s": p.ring_timeout_s,
                "devices": [
                    {
                        "device_id": p.device_id,
                        "kind": "sip",
                        "label": "Desk",
                        "dial_string": dial_string(p, ports),
                    }
                ],
            }
            for p in PEOPLE
        ],
        "numbers": [
            {"number": p.number, "tenant_id": TENANT, "user_id": p.user_id} for p in PEOPLE
        ],
    }


def write_fixture(ports: PortPlan, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(directory_fixture(ports), indent=2))
    return path
