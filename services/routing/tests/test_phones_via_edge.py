"""Dialling phones through the SIP edge's location service (provisioning/edge.py): which dial
strings are rewritten, and how the provisioner tells phones from trunks."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from ringwise.directory.v1 import devices_pb2
from ringwise_kit.ari.calls import RestCall
from ringwise_routing.provisioning.edge import PhonesViaEdge
from ringwise_routing.provisioning.pjsip import PjsipOptions
from ringwise_routing.provisioning.provisioner import Provisioner
from ringwise_routing.settings import RoutingSettings

EDGE = "rw-ringwise-sip-edge-internal.telephony.svc.cluster.local:5091"


def phones(*names: str, edge: str = EDGE) -> PhonesViaEdge:
    via_edge = PhonesViaEdge(edge)
    for name in names:
        via_edge.phone_provisioned(name)
    return via_edge


@pytest.mark.parametrize(
    ("dial_string", "dialled"),
    [
        # A provisioned phone: its endpoint (codecs, settings), the request to the edge.
        ("PJSIP/rw00a1", f"PJSIP/rw00a1/sip:rw00a1@{EDGE}"),
        # Not known as a phone (a trunk, or not provisioned yet): as before.
        ("PJSIP/rw00b2", "PJSIP/rw00b2"),
        # Dial strings that already name their destination are left alone.
        ("PJSIP/pstn/sip:+15550100@192.0.2.1:5060", "PJSIP/pstn/sip:+15550100@192.0.2.1:5060"),
        ("PJSIP/rw00a1/sip:rw00a1@198.51.100.7:5060", "PJSIP/rw00a1/sip:rw00a1@198.51.100.7:5060"),
        ("Local/100@somewhere", "Local/100@somewhere"),
    ],
)
def test_only_a_provisioned_phones_endpoint_goes_through_the_edge(
    dial_string: str, dialled: str
) -> None:
    assert phones("rw00a1").dial_string(dial_string) == dialled


def test_without_an_edge_nothing_is_rewritten() -> None:
    assert phones("rw00a1", edge="").dial_string("PJSIP/rw00a1") == "PJSIP/rw00a1"


def test_the_setting_is_empty_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RINGWISE_PHONES_VIA_EDGE", raising=False)
    assert RoutingSettings().phones_via_edge == ""
    monkeypatch.setenv("RINGWISE_PHONES_VIA_EDGE", EDGE)
    assert RoutingSettings().phones_via_edge == EDGE


class FakeAri:
    def __init__(self) -> None:
        self.calls: list[RestCall] = []

    async def run_all(self, *calls: RestCall) -> list[object]:
        self.calls += calls
        return [None for _ in calls]


class FakeRedis:
    def __init__(self) -> None:
        self.members: set[str] = set()

    async def sadd(self, _key: str, member: str) -> None:
        self.members.add(member)

    async def srem(self, _key: str, member: str) -> None:
        self.members.discard(member)


def test_the_provisioner_marks_phones_not_trunks_and_forgets_removed_devices() -> None:
    via_edge = PhonesViaEdge(EDGE)
    provisioner = Provisioner(
        cast(Any, None),
        cast(Any, FakeRedis()),
        cast(Any, FakeAri()),
        PjsipOptions(),
        phones_via_edge=via_edge,
    )
    phone = devices_pb2.SipDevice(
        tenant_id="acme", device_id="d1", sip_username="rw00a1", md5_cred="0" * 32, kind="phone"
    )
    trunk = devices_pb2.SipDevice(
        tenant_id="acme",
        device_id="d2",
        sip_username="rw00b2",
        kind="trunk",
        trunk_address="198.51.100.7:5060",
    )

    async def scenario() -> None:
        await provisioner.apply(phone)
        await provisioner.apply(trunk)
        assert via_edge.dial_string("PJSIP/rw00a1") == f"PJSIP/rw00a1/sip:rw00a1@{EDGE}"
        # A trunk is reached at its own address from every pod.
        assert via_edge.dial_string("PJSIP/rw00b2") == "PJSIP/rw00b2"
        await provisioner.remove("rw00a1")
        assert via_edge.dial_string("PJSIP/rw00a1") == "PJSIP/rw00a1"

    asyncio.run(scenario())
