"""What voicemail hands the ringwise-mwi dialplan (messages/mwi.py): the edge's phone socket
rides along for endpoints with no contact on the sending Asterisk pod (Kubernetes)."""

from __future__ import annotations

import asyncio

from ringwise_voicemail.messages import mwi

EDGE = "rw-ringwise-sip-edge-internal.telephony.svc.cluster.local:5091"


class RecordingOriginator:
    def __init__(self) -> None:
        self.variables: list[dict[str, str]] = []

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
    ) -> None:
        assert (endpoint, context) == (mwi.LOCAL_ENDPOINT, mwi.MWI_CONTEXT)
        self.variables.append(dict(variables or {}))


def test_an_endpoint_target_carries_the_edge_for_the_dialplans_fallback() -> None:
    variables = mwi.notify_variables("rw00a1", "sip:acme-alice@ringwise", 2, 1, 0, EDGE)
    assert variables["MWI_TO"] == "PJSIP/rw00a1"
    assert variables["MWI_EDGE"] == EDGE
    assert variables["MWI_NEW"] == "2" and variables["MWI_OLD"] == "1"


def test_without_an_edge_the_dialplan_gets_none_and_behaves_as_before() -> None:
    assert mwi.notify_variables("rw00a1", "sip:acme-alice@ringwise", 0, 0, 0)["MWI_EDGE"] == ""


def test_send_counts_passes_the_edge_with_every_target() -> None:
    ari = RecordingOriginator()
    asyncio.run(
        mwi.send_counts(
            ari,
            ("rw00a1", "sip:lamp@198.51.100.7:5060", "bad target"),
            "sip:acme-alice@ringwise",
            new=1,
            old=0,
            urgent=0,
            phones_via_edge=EDGE,
        )
    )
    assert [v["MWI_TO"] for v in ari.variables] == ["PJSIP/rw00a1", "sip:lamp@198.51.100.7:5060"]
    assert {v["MWI_EDGE"] for v in ari.variables} == {EDGE}
