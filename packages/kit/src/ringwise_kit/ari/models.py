"""Typed models for the ARI resources and events Ringwise uses (Asterisk 22 ARI).

Only the fields we read are declared; unknown fields are ignored so newer Asterisk versions
parse too. Unknown event types parse as the base AriEvent. An event frame is validated
straight from its JSON text by one discriminated union (pydantic's core parses the JSON, picks
the model by "type" and reads ARI's '2026-11-25T12:00:00.123+0000' timestamps itself), which
costs a third of json.loads + model_validate with a Python timestamp parser.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CallerId(_Model):
    name: str = ""
    number: str = ""


class DialplanCep(_Model):
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""


class Channel(_Model):
    id: str
    name: str = ""
    state: str = ""
    protocol_id: str = ""
    caller: CallerId = CallerId()
    connected: CallerId = CallerId()
    dialplan: DialplanCep = DialplanCep()
    creationtime: datetime | None = None
    language: str = "en"
    channelvars: dict[str, Any] = Field(default_factory=dict)


class Bridge(_Model):
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    name: str = ""
    channels: list[str] = Field(default_factory=list)


class Playback(_Model):
    id: str
    media_uri: str = ""
    target_uri: str = ""
    state: str = ""


class AriEvent(_Model):
    type: str
    application: str = ""
    asterisk_id: str = ""
    timestamp: datetime


class StasisStart(AriEvent):
    type: Literal["StasisStart"] = "StasisStart"
    args: list[str] = Field(default_factory=list)
    channel: Channel
    replace_channel: Channel | None = None


class StasisEnd(AriEvent):
    type: Literal["StasisEnd"] = "StasisEnd"
    channel: Channel


class ChannelStateChange(AriEvent):
    type: Literal["ChannelStateChange"] = "ChannelStateChange"
    channel: Channel


class ChannelDestroyed(AriEvent):
    type: Literal["ChannelDestroyed"] = "ChannelDestroyed"
    cause: int = 0
    cause_txt: str = ""
    channel: Channel


class ChannelHangupRequest(AriEvent):
    type: Literal["ChannelHangupRequest"] = "ChannelHangupRequest"
    cause: int = 0
    soft: bool = False
    channel: Channel


class ChannelDtmfReceived(AriEvent):
    type: Literal["ChannelDtmfReceived"] = "ChannelDtmfReceived"
    digit: str
    duration_ms: int = 0
    channel: Channel


class Dial(AriEvent):
    """Progress of a dial: dialstatus is '', RINGING, PROGRESS, ANSWER, BUSY, NOANSWER,
    CANCEL, CONGESTION, CHANUNAVAIL..."""

    type: Literal["Dial"] = "Dial"
    dialstatus: str = ""
    dialstring: str = ""
    peer: Channel
    caller: Channel | None = None


class PlaybackStarted(AriEvent):
    type: Literal["PlaybackStarted"] = "PlaybackStarted"
    playback: Playback


class PlaybackFinished(AriEvent):
    type: Literal["PlaybackFinished"] = "PlaybackFinished"
    playback: Playback


class LiveRecording(_Model):
    name: str
    format: str = ""
    state: str = ""
    target_uri: str = ""  # "channel:<id>" or "bridge:<id>": what is being recorded
    duration: int | None = None  # seconds, once finished
    talking_duration: int | None = None
    silence_duration: int | None = None
    cause: str | None = None  # why it failed (Asterisk may leave it out)


class RecordingStarted(AriEvent):
    type: Literal["RecordingStarted"] = "RecordingStarted"
    recording: LiveRecording


class RecordingFinished(AriEvent):
    type: Literal["RecordingFinished"] = "RecordingFinished"
    recording: LiveRecording


class RecordingFailed(AriEvent):
    type: Literal["RecordingFailed"] = "RecordingFailed"
    recording: LiveRecording


class ChannelEnteredBridge(AriEvent):
    type: Literal["ChannelEnteredBridge"] = "ChannelEnteredBridge"
    bridge: Bridge
    channel: Channel


class ChannelLeftBridge(AriEvent):
    type: Literal["ChannelLeftBridge"] = "ChannelLeftBridge"
    bridge: Bridge
    channel: Channel


class BridgeDestroyed(AriEvent):
    type: Literal["BridgeDestroyed"] = "BridgeDestroyed"
    bridge: Bridge


KnownEvent = Annotated[
    StasisStart
    | StasisEnd
    | ChannelStateChange
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelDtmfReceived
    | Dial
    | PlaybackStarted
    | PlaybackFinished
    | RecordingStarted
    | RecordingFinished
    | RecordingFailed
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | BridgeDestroyed,
    Field(discriminator="type"),
]
# Some mypy runs do not take an Annotated union for a type form (PEP 747), some do.
_KNOWN_EVENT: TypeAdapter[AriEvent] = TypeAdapter(
    KnownEvent  # type: ignore[arg-type,unused-ignore]
)


def _unknown_type(exc: ValidationError) -> bool:
    """The union refused the event only for its type: one we do not model."""
    return all(error["type"] == "union_tag_invalid" for error in exc.errors())


def parse_event(data: dict[str, Any]) -> AriEvent:
    """One event as a dict; an unknown type as the base AriEvent."""
    try:
        event: AriEvent = _KNOWN_EVENT.validate_python(data)
        return event
    except ValidationError as exc:
        if not _unknown_type(exc):
            raise
    return AriEvent.model_validate(data)


def parse_event_json(text: str | bytes) -> AriEvent:
    """One event frame as ARI sent it; an unknown type as the base AriEvent."""
    try:
        event: AriEvent = _KNOWN_EVENT.validate_json(text)
        return event
    except ValidationError as exc:
        if not _unknown_type(exc):
            raise
    return AriEvent.model_validate_json(text)
