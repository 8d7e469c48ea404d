"""Whom the mailbox's forward (key 8) sends to, from the digits the owner keys (table-driven):
the user a number reaches, else a user of the owner's tenant by extension, else a team of the
tenant by its extension or number; another tenant's user, an unknown number or a silent
directory: nobody (the "sorry" prompt). And the forward itself: a timed-out request is asked
again once (it is idempotent), a refused one is not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
from nats.errors import TimeoutError as NatsTimeout
from ringwise.voicemail.v1 import mailbox_pb2
from ringwise_routing.calls import voicemail_step
from ringwise_routing.calls.voicemail_step import ForwardTarget, PhoneMenu, VoicemailStep
from ringwise_routing.calls.waiting import CallerHungUp

# What the stand-in directory knows: numbers reach users; teams by (tenant, extension or number).
USERS = {"15550100": ("acme", "alice"), "15550999": ("globex", "gail")}
TEAMS = {("acme", "700"): "tm_support", ("acme", "15550700"): "tm_sales"}
COLLEAGUES = {("acme", "201"): "bob", ("globex", "202"): "gus"}


async def find_user(keyed: str) -> tuple[str, str] | None:
    return USERS.get(keyed)


async def find_team(tenant_id: str, keyed: str) -> str | None:
    return TEAMS.get((tenant_id, keyed))


async def find_colleague(tenant_id: str, keyed: str) -> str | None:
    return COLLEAGUES.get((tenant_id, keyed))


def step(*, teams: bool = True) -> VoicemailStep:
    # forward_target uses neither NATS nor ARI.
    return VoicemailStep(
        cast(Any, None),
        cast(Any, None),
        CallerHungUp,
        find_user=find_user,
        find_colleague=find_colleague,
        find_team=find_team if teams else None,
    )


@pytest.mark.parametrize(
    ("keyed", "expected"),
    [
        ("15550100", ForwardTarget(user_id="alice")),  # a colleague's number (as before)
        ("201", ForwardTarget(user_id="bob")),  # a colleague's extension
        ("202", None),  # an extension of another tenant
        ("700", ForwardTarget(team_id="tm_support")),  # a team's extension
        ("15550700", ForwardTarget(team_id="tm_sales")),  # a team's number
        ("15550999", None),  # another tenant's user
        ("701", None),  # nobody
        ("", None),  # nothing keyed
    ],
)
async def test_the_keyed_digits_name_a_user_or_a_team_of_the_owners_tenant(
    keyed: str, expected: ForwardTarget | None
) -> None:
    assert await step().forward_target("acme", keyed) == expected


async def test_another_tenants_team_is_nobody() -> None:
    assert await step().forward_target("globex", "700") is None


async def test_without_team_lookups_only_users_are_found() -> None:
    assert await step(teams=False).forward_target("acme", "700") is None
    assert await step(teams=False).forward_target("acme", "15550100") == ForwardTarget(
        user_id="alice"
    )


class ScriptedKeys:
    """The owner keys the team's extension; every prompt played is noted."""

    def __init__(self) -> None:
        self.played: list[str] = []

    async def number(self, prompt: Sequence[str], max_digits: int = 20) -> str:
        return "700"

    async def play(self, media: Sequence[str], stop_on: Sequence[str] | None = None) -> None:
        self.played.extend(media)


class ForwardingStep(VoicemailStep):
    async def record_raw(self, call: Any, name: str, max_seconds: int) -> None:
        pass  # the introduction: recorded on real Asterisk in the e2e test


class ScriptedMenu(PhoneMenu):
    """Voicemail's answers to the forward request, in order (an exception: raised)."""

    def __init__(self, answers: list[mailbox_pb2.MailboxActionReply | Exception]) -> None:
        keys = ScriptedKeys()
        super().__init__(
            ForwardingStep(cast(Any, None), cast(Any, None), CallerHungUp, find_team=find_team),
            cast(Any, None),
            cast(Any, keys),
            "session-1",
            "acme",
        )
        self.played = keys.played
        self.answers = answers
        self.asked: list[tuple[str, float, str]] = []

    async def act(
        self,
        message: mailbox_pb2.PhoneMessage | None,
        action: mailbox_pb2.MailboxActionRequest.Action.ValueType,
        timeout_s: float = 2.0,
        **extra: str,
    ) -> mailbox_pb2.MailboxActionReply:
        self.asked.append((extra["forward_to_team_id"], timeout_s, extra["annotation_recording"]))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


DONE = mailbox_pb2.MailboxActionReply(status=mailbox_pb2.MailboxActionReply.STATUS_DONE)
MESSAGE = mailbox_pb2.PhoneMessage(message_id="m1")


async def test_a_timed_out_forward_is_asked_again_once_with_the_same_introduction() -> None:
    menu = ScriptedMenu([NatsTimeout(), DONE])
    await menu.forward(MESSAGE)
    assert [(team, timeout) for team, timeout, _ in menu.asked] == [
        ("tm_support", voicemail_step.FORWARD_TIMEOUT_S),
        ("tm_support", voicemail_step.FORWARD_TIMEOUT_S),
    ]
    assert menu.asked[0][2] == menu.asked[1][2]  # the same annotation: voicemail's key
    assert menu.played[-1] == "sound:vm-msgforwarded"


async def test_a_forward_that_never_answers_or_is_refused_says_sorry() -> None:
    silent = ScriptedMenu([NatsTimeout(), NatsTimeout()])
    await silent.forward(MESSAGE)
    assert len(silent.asked) == voicemail_step.FORWARD_ATTEMPTS
    assert silent.played[-1] == "sound:vm-sorry"

    refused = ScriptedMenu([RuntimeError("voicemail refused")])
    await refused.forward(MESSAGE)
    assert len(refused.asked) == 1  # an error is not retried
    assert refused.played[-1] == "sound:vm-sorry"
