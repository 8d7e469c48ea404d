"""Messaging service: runs, is healthy and owns its durable consumer on the call events.

Its behaviour is its own issue's; until then it only notes the events it will act on.
"""

from __future__ import annotations

from aiohttp import web
from ringwise_kit import service, subjects
from ringwise_kit.config import KitSettings
from ringwise_kit.observer import create_observer_app


class MessagingSettings(KitSettings):
    service_name: str = "messaging"
    http_port: int = 9106


# Routing publishes exactly the calls these alerts are about, so messaging no longer wakes up
# for every CDR.
PLANS = {
    subjects.CALL_MISSED: "send the called user a lost-call SMS alert",
    subjects.CALL_DIVERTED: "send the called user a delegated-call SMS alert",
}


def create_app(settings: MessagingSettings | None = None) -> web.Application:
    return create_observer_app(settings or MessagingSettings(), PLANS)


def main() -> None:
    settings = MessagingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
