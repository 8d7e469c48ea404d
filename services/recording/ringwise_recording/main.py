"""Recording service: runs, is healthy and owns its durable consumer on the call events.

Its behaviour is its own issue's; until then it only notes the events it will act on.
"""

from __future__ import annotations

from aiohttp import web
from ringwise_kit import service, subjects
from ringwise_kit.config import KitSettings
from ringwise_kit.observer import create_observer_app


class RecordingSettings(KitSettings):
    service_name: str = "recording"
    http_port: int = 9105


PLANS = {
    subjects.CALL_ANSWERED: "start the recording policy of the tenant, team or user",
    subjects.CALL_ENDED: "archive the finished recording into the WORM S3 bucket",
}


def create_app(settings: RecordingSettings | None = None) -> web.Application:
    return create_observer_app(settings or RecordingSettings(), PLANS)


def main() -> None:
    settings = RecordingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
