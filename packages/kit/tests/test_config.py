"""Settings shared by every service, from RINGWISE_* environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ringwise_kit.config import KitSettings


def test_stream_replicas_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KitSettings().stream_replicas == 1
    monkeypatch.setenv("RINGWISE_STREAM_REPLICAS", "3")
    assert KitSettings().stream_replicas == 3


@pytest.mark.parametrize("replicas", ["0", "6", "three"])
def test_impossible_stream_replicas_are_refused(
    monkeypatch: pytest.MonkeyPatch, replicas: str
) -> None:
    monkeypatch.setenv("RINGWISE_STREAM_REPLICAS", replicas)
    with pytest.raises(ValidationError, match="stream_replicas"):
        KitSettings()


def test_services_run_on_uvloop_unless_told_to_use_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert KitSettings().event_loop == "uvloop"
    monkeypatch.setenv("RINGWISE_EVENT_LOOP", "asyncio")
    assert KitSettings().event_loop == "asyncio"
    monkeypatch.setenv("RINGWISE_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        KitSettings()
