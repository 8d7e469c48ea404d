"""ARI REST calls as data, so several can be sent in one write (AriClient.run_all)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class RestCall:
    """One ARI REST request (path below /ari)."""

    method: str
    path: str
    params: Mapping[str, str | int | float] = field(default_factory=dict)
    body: Any = None


def answer(channel_id: str) -> RestCall:
    return RestCall("POST", f"/channels/{channel_id}/answer")


def ring(channel_id: str) -> RestCall:
    return RestCall("POST", f"/channels/{channel_id}/ring")


def hangup(
    channel_id: str, *, reason: str | None = None, reason_code: int | None = None
) -> RestCall:
    params: dict[str, str | int] = {}
    if reason_code is not None:
        params["reason_code"] = reason_code
    elif reason is not None:
        params["reason"] = reason
    return RestCall("DELETE", f"/channels/{channel_id}", params)


def create_channel(
    app: str,
    endpoint: str,
    *,
    channel_id: str,
    app_args: Sequence[str] = (),
    originator: str | None = None,
    variables: Mapping[str, str] | None = None,
    formats: str | None = None,
) -> RestCall:
    params: dict[str, str] = {"endpoint": endpoint, "app": app, "channelId": channel_id}
    if app_args:
        params["appArgs"] = ",".join(app_args)
    if originator:
        params["originator"] = originator
    if formats:
        params["formats"] = formats
    body = {"variables": dict(variables)} if variables else None
    return RestCall("POST", "/channels/create", params, body)


def dial(channel_id: str, *, caller: str | None = None, timeout_s: int | None = None) -> RestCall:
    """Dial a created channel; `caller` is the channel it is dialled for (ringback, CLI)."""
    params: dict[str, str | int] = {}
    if caller:
        params["caller"] = caller
    if timeout_s:
        params["timeout"] = timeout_s
    return RestCall("POST", f"/channels/{channel_id}/dial", params)


def create_bridge(bridge_id: str, bridge_type: str = "mixing") -> RestCall:
    return RestCall("POST", f"/bridges/{bridge_id}", {"type": bridge_type})


def add_to_bridge(
    bridge_id: str, channel_ids: Sequence[str], *, keep_identities: bool = False
) -> RestCall:
    """keep_identities: the channels' caller IDs are not presented to the other members (a
    channel not yet dialled keeps the connected line it was given)."""
    params = {"channel": ",".join(channel_ids)}
    if keep_identities:
        params["inhibitConnectedLineUpdates"] = "true"
    return RestCall("POST", f"/bridges/{bridge_id}/addChannel", params)


def destroy_bridge(bridge_id: str) -> RestCall:
    return RestCall("DELETE", f"/bridges/{bridge_id}")


def record_bridge(
    bridge_id: str,
    name: str,
    *,
    fmt: str = "wav",
    beep: bool = False,
    if_exists: str = "fail",
) -> RestCall:
    """Record a bridge's mixed audio as stored recording `name` (until the bridge ends)."""
    params = {"name": name, "format": fmt, "beep": str(beep).lower(), "ifExists": if_exists}
    return RestCall("POST", f"/bridges/{bridge_id}/record", params)


def snoop(channel_id: str, snoop_id: str, app: str, *, spy: str = "in") -> RestCall:
    """A snoop channel hearing one direction of a channel (dual-channel recording)."""
    params = {"app": app, "spy": spy, "whisper": "none", "snoopId": snoop_id}
    return RestCall("POST", f"/channels/{channel_id}/snoop", params)


def record_channel(
    channel_id: str,
    name: str,
    *,
    fmt: str = "wav",
    if_exists: str = "fail",
    beep: bool = False,
    max_duration_s: int = 0,
    max_silence_s: int = 0,
    terminate_on: str = "none",
) -> RestCall:
    """Record what a channel hears/says as stored recording `name`. 0 = no limit; a
    terminate_on digit (e.g. "#") ends the recording (voicemail deposits)."""
    params: dict[str, str | int] = {
        "name": name,
        "format": fmt,
        "ifExists": if_exists,
        "beep": str(beep).lower(),
        "maxDurationSeconds": max_duration_s,
        "maxSilenceSeconds": max_silence_s,
        "terminateOn": terminate_on,
    }
    return RestCall("POST", f"/channels/{channel_id}/record", params)


def stop_recording(name: str) -> RestCall:
    """Stop a live recording and keep its file."""
    return RestCall("POST", f"/recordings/live/{quote(name, safe='')}/stop")


def cancel_recording(name: str) -> RestCall:
    """Stop a live recording and discard its file."""
    return RestCall("DELETE", f"/recordings/live/{quote(name, safe='')}")


def delete_stored_recording(name: str) -> RestCall:
    return RestCall("DELETE", f"/recordings/stored/{quote(name, safe='')}")


def play_bridge(bridge_id: str, playback_id: str, media: str, lang: str = "en") -> RestCall:
    """Play media to everyone in a bridge (e.g. a recording announcement)."""
    return RestCall(
        "POST", f"/bridges/{bridge_id}/play/{playback_id}", {"media": media, "lang": lang}
    )


def put_dynamic_config(
    config_class: str, object_type: str, object_id: str, fields: Mapping[str, str]
) -> RestCall:
    """Create or replace a sorcery object live (it needs a writable wizard, e.g. memory)."""
    body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
    return RestCall(
        "PUT", f"/asterisk/config/dynamic/{config_class}/{object_type}/{object_id}", {}, body
    )


def delete_dynamic_config(config_class: str, object_type: str, object_id: str) -> RestCall:
    return RestCall("DELETE", f"/asterisk/config/dynamic/{config_class}/{object_type}/{object_id}")
