"""A thin asyncio client for Asterisk's REST Interface (ARI), with typed models.

Why our own: the `ari` package named by the product card is Python-2 only; the async
alternatives build their API at run time from Asterisk's old Swagger files. ARI's core is one
event WebSocket plus a few dozen REST calls (docs/deviations.md).
"""

from ringwise_kit.ari.client import AriClient, AriError, AriNotFound
from ringwise_kit.ari.instances import (
    AriInstances,
    UnknownInstance,
    ari_url_for,
    is_instance_name,
)
from ringwise_kit.ari.models import (
    AriEvent,
    Bridge,
    CallerId,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelStateChange,
    Dial,
    DialplanCep,
    LiveRecording,
    Playback,
    PlaybackFinished,
    PlaybackStarted,
    RecordingFailed,
    RecordingFinished,
    RecordingStarted,
    StasisEnd,
    StasisStart,
    parse_event,
    parse_event_json,
)

__all__ = [
    "AriClient",
    "AriError",
    "AriEvent",
    "AriInstances",
    "AriNotFound",
    "Bridge",
    "CallerId",
    "Channel",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelHangupRequest",
    "ChannelStateChange",
    "Dial",
    "DialplanCep",
    "LiveRecording",
    "Playback",
    "PlaybackFinished",
    "PlaybackStarted",
    "RecordingFailed",
    "RecordingFinished",
    "RecordingStarted",
    "StasisEnd",
    "StasisStart",
    "UnknownInstance",
    "ari_url_for",
    "is_instance_name",
    "parse_event",
    "parse_event_json",
]
