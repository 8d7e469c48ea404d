"""Voicemail service: runs, is healthy and owns its durable consumer on the call events.

Its behaviour is its own issue's; until then it only notes the events it will act on.
"""

from __future__ import annotations

from aiohttp import web
from ringwise_kit import service, subjects
from ringwise_kit.config import KitSettings
from ringwise_kit.observer import create_observer_app


class VoicemailSettings(KitSettings):
    service_name: str = "voicemail"
    http_port: int = 9104


PLANS = {
    subjects.CALL_ROUTED: "offer the caller a mailbox when the plan ends in voicemail",
    subjects.CALL_ENDED: "count missed calls for message-waiting and alerts",
}


def create_app(settings: VoicemailSettings | None = None) -> web.Application:
    return create_observer_app(settings or VoicemailSettings(), PLANS)


def main() -> None:
    settings = VoicemailSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
