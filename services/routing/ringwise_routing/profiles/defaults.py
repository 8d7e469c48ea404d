"""The ProfileSource for a routing service without stored profiles: every user gets
default_routing() (every usable device rung together, then voicemail). The stored
implementation (profiles/store.py) replaces it in main.py once it exists."""

from __future__ import annotations

from collections.abc import Callable

from ringwise_routing.plans.model import RoutingProfile
from ringwise_routing.profiles.source import ProfileChange, UserReply, UserRouting, default_routing


class ProfilesNotStored(Exception):
    """A change was asked of a source that stores nothing."""


class DefaultProfiles:
    def __init__(self, trunk_dial: Callable[[str], str]) -> None:
        self._trunk_dial = trunk_dial

    async def routing_for(self, user: UserReply) -> UserRouting:
        return default_routing(user, self._trunk_dial)

    async def change(
        self, user: UserReply, change: ProfileChange, *, origin: str
    ) -> RoutingProfile:
        raise ProfilesNotStored(f"routing profiles are not stored here ({origin} change refused)")
