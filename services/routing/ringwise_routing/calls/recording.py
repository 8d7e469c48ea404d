"""Call recording control: which policy applies, and recording the bridge of an answered call.

- The policy (none / on-demand / compliant, retention, announcement) comes from the recording
  service over NATS request/reply (`ringwise.v1.recording.policy`), asked when the call is
  routed and cached here for a while. If the recording service cannot answer, the last known
  answer is used even if stale; with none, the call is not recorded (logged as an error: a
  call must not fail because its recording cannot be set up).
- compliant: the announcement is played into the bridge, then the bridge is recorded;
  on-demand: the bridge is recorded from the start without announcement, and the recording
  service keeps it only if the user asked during the call (keep request), else discards it.
- When the call ends (the bridge is destroyed, which stops the recording), Asterisk reports
  RecordingFinished; routing then publishes RecordingFinished on the RECORDINGS stream and the
  recording service archives the file.

Layout: mixed (the bridge, one track) or, for a "dual" policy, one track per party: a snoop
channel hears each party and is recorded on its own (rw-<call>-caller / rw-<call>-callee). If
Asterisk cannot snoop, the call is recorded mixed and the events say so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter
from ringwise.events.v1 import recording_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import (
    AriClient,
    AriError,
    AriEvent,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    StasisStart,
    calls,
)
from ringwise_kit.events import event_header, to_timestamp
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.cdr import CallRecord

log = get_logger(__name__)

RECORDINGS = Counter("ringwise_routing_recordings_total", "Call recordings", ["mode", "outcome"])
ANNOUNCEMENT_TIMEOUT_S = 15.0
FINISH_TIMEOUT_S = 5.0
SNOOP_START_TIMEOUT_S = 2.0
# Dialled by the user during an on-demand call: keep this call's recording.
KEEP_FEATURE_CODE = "*9"
DEFAULT_ANNOUNCEMENT = "conf-now-recording"

Policy = recording_pb2.RecordingPolicy
# The session's event wait: (match, timeout) -> the event, or None on timeout.
WaitFor = Callable[[Callable[[AriEvent], bool], float], Awaitable[AriEvent | None]]


class RecordingPolicies:
    def __init__(self, nc: NatsClient, *, ttl_s: float = 30.0, timeout_s: float = 0.5) -> None:
        self._nc = nc
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._cache: dict[tuple[str, str, str], tuple[float, Policy]] = {}
        self._changes: Subscription | None = None

    async def watch(self) -> None:
        """Drop a tenant's cached policies as soon as its settings change (the TTL remains
        the fallback should a change notice be lost)."""

        async def changed(msg: Msg) -> None:
            change = recording_pb2.RecordingPolicyRequest()
            try:
                change.ParseFromString(msg.data)
            except DecodeError:
                log.warning("recording_policy_change_undecodable", subject=msg.subject)
                return
            self.forget(change.tenant_id)

        self._changes = await self._nc.subscribe(subjects.RECORDING_POLICY_CHANGED, cb=changed)

    async def close(self) -> None:
        if self._changes is not None:
            with contextlib.suppress(Exception):
                await self._changes.unsubscribe()
            self._changes = None

    def forget(self, tenant_id: str) -> None:
        for key in [key for key in self._cache if key[0] == tenant_id]:
            del self._cache[key]

    async def policy_for(self, tenant_id: str, user_id: str, team_id: str = "") -> Policy:
        if not tenant_id:
            return Policy(mode=recording_pb2.RECORDING_MODE_NONE)
        key = (tenant_id, user_id, team_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            policy = await bus.request(
                self._nc,
                subjects.RECORDING_POLICY,
                recording_pb2.RecordingPolicyRequest(
                    tenant_id=tenant_id, user_id=user_id, team_id=team_id
                ),
                Policy,
                timeout_s=self._timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError) as exc:
            if cached is not None:
                log.warning("recording_policy_stale", tenant_id=tenant_id, error=repr(exc))
                return cached[1]
            log.error("recording_policy_unavailable", tenant_id=tenant_id, error=repr(exc))
            return Policy(mode=recording_pb2.RECORDING_MODE_NONE)
        self._cache[key] = (time.monotonic() + self._ttl_s, policy)
        return policy


def recording_name(call_id: str, party: str = "") -> str:
    """The stored recording's name on Asterisk (and the archive's recording id)."""
    name = f"{subjects.CALL_RECORDING_NAME_PREFIX}{call_id}"
    return f"{name}-{party}" if party else name


@dataclass(frozen=True)
class Track:
    name: str
    party: str  # "" for the mixed track, else "caller" / "callee"


@dataclass
class CallRecording:
    """One call's recording (one mixed track, or one track per party), from start to the
    RecordingFinished events that hand it to the archive."""

    call_id: str
    policy: Policy
    user_channel: str = ""  # the leg of the user the policy belongs to (feature codes)
    tracks: list[Track] = field(default_factory=list)
    announcement: str = ""
    keep_requested: bool = False
    # The Asterisk whose spool gets the files (AriClient.instance): the archive fetches there.
    asterisk_instance: str = ""
    _digits: str = ""

    def on_dtmf(self, channel_id: str, digit: str) -> None:
        """The user dialled during the call: KEEP_FEATURE_CODE keeps an on-demand recording."""
        if channel_id != self.user_channel or self.keep_requested:
            return
        self._digits = (self._digits + digit)[-len(KEEP_FEATURE_CODE) :]
        if self._digits == KEEP_FEATURE_CODE:
            self.keep_requested = True
            log.info("recording_keep_requested", by="feature_code")

    async def finish(
        self, record: CallRecord, wait_for: WaitFor
    ) -> list[recording_pb2.RecordingFinished]:
        """Once the bridge is gone: wait (briefly) for Asterisk to close each file, then the
        events that hand them to the archive."""
        pending = {track.name for track in self.tracks}

        def closed(event: AriEvent) -> bool:
            return (
                isinstance(event, RecordingFinished | RecordingFailed)
                and event.recording.name in pending
            )

        mode = recording_pb2.RecordingMode.Name(self.policy.mode)
        while pending:
            done = await wait_for(closed, FINISH_TIMEOUT_S)
            if done is None:
                log.warning("recording_finish_not_seen", names=sorted(pending))
                break
            assert isinstance(done, RecordingFinished | RecordingFailed)
            pending.discard(done.recording.name)
            failed = isinstance(done, RecordingFailed)
            if failed:
                log.error("recording_failed", name=done.recording.name, cause=done.recording.cause)
            RECORDINGS.labels(mode, "failed" if failed else "done").inc()
        started = record.answered_at or record.started_at
        dual = any(track.party for track in self.tracks)
        return [
            recording_pb2.RecordingFinished(
                header=event_header(
                    record.tenant_id,
                    self.call_id,
                    f"{track.name}:{subjects.RECORDING_FINISHED}",
                    record.ended_at or started,
                ),
                recording_id=track.name,
                asterisk_name=track.name,
                format="wav",
                mode=self.policy.mode,
                layout=(
                    recording_pb2.CHANNEL_LAYOUT_DUAL
                    if dual
                    else recording_pb2.CHANNEL_LAYOUT_MIXED
                ),
                party=track.party,
                user_id=record.user_id,
                from_number=record.from_number,
                to_number=record.to_number,
                started_at=to_timestamp(started),
                ended_at=to_timestamp(record.ended_at or started),
                retention_days=self.policy.retention_days,
                source="call",
                announcement=self.announcement,
                keep_requested=self.keep_requested,
                asterisk_instance=self.asterisk_instance,
            )
            for track in self.tracks
        ]


async def _record_parties(
    ari: AriClient,
    recording: CallRecording,
    parties: dict[str, str],
    wait_for: WaitFor,
    track_id: Callable[[str], None],
) -> None:
    """Dual-channel: a snoop channel hearing each party (spy "in": what that party says),
    each recorded on its own. Raises AriError if Asterisk cannot snoop."""
    for party, channel_id in parties.items():
        snoop_id = f"{recording.call_id}-snoop-{party}"
        name = recording_name(recording.call_id, party)
        track_id(snoop_id)
        track_id(name)
        await ari.call(calls.snoop(channel_id, snoop_id, ari.app, spy="in"))

        def snoop_entered(event: AriEvent, snoop_id: str = snoop_id) -> bool:
            return isinstance(event, StasisStart) and event.channel.id == snoop_id

        entered = await wait_for(snoop_entered, SNOOP_START_TIMEOUT_S)
        if entered is None:
            raise AriError(504, f"snoop channel {snoop_id} never entered Stasis", "POST", "/snoop")
        await ari.call(calls.record_channel(snoop_id, name))
        recording.tracks.append(Track(name, party))


async def _announce(
    ari: AriClient, call_id: str, bridge_id: str, sound: str, wait_for: WaitFor
) -> str:
    """Play the announcement into the bridge; the prompt that was heard, or "" if none was.
    A configured sound Asterisk cannot play falls back to the default one."""
    sounds = [sound or DEFAULT_ANNOUNCEMENT]
    if sounds[0] != DEFAULT_ANNOUNCEMENT:
        sounds.append(DEFAULT_ANNOUNCEMENT)
    for attempt, name in enumerate(sounds):
        prompt = f"sound:{name}"
        playback_id = f"{call_id}-announce-{attempt}"
        await ari.call(calls.play_bridge(bridge_id, playback_id, prompt))

        def finished(event: AriEvent, playback_id: str = playback_id) -> bool:
            return isinstance(event, PlaybackFinished) and event.playback.id == playback_id

        played = await wait_for(finished, ANNOUNCEMENT_TIMEOUT_S)
        if isinstance(played, PlaybackFinished) and played.playback.state == "done":
            return prompt
        log.warning("announcement_not_played", prompt=prompt)
    return ""


async def start(
    ari: AriClient,
    call_id: str,
    bridge_id: str,
    parties: dict[str, str],
    policy: Policy,
    wait_for: WaitFor,
    track_id: Callable[[str], None],
) -> CallRecording | None:
    """Announce (compliant) and start recording; None when the policy records nothing or
    Asterisk refused (the call goes on either way). parties maps "caller"/"callee" to their
    channels; track_id(id) must route that channel's / recording's events to this call."""
    if policy.mode not in (
        recording_pb2.RECORDING_MODE_COMPLIANT,
        recording_pb2.RECORDING_MODE_ON_DEMAND,
    ):
        return None
    recording = CallRecording(
        call_id, policy, user_channel=parties.get("callee", ""), asterisk_instance=ari.instance
    )
    mode = recording_pb2.RecordingMode.Name(policy.mode)
    track_id(bridge_id)
    track_id(recording_name(call_id))
    try:
        if policy.mode == recording_pb2.RECORDING_MODE_COMPLIANT:
            announced = await _announce(ari, call_id, bridge_id, policy.announcement, wait_for)
            if not announced:
                # Never record a compliant call whose parties did not hear the announcement.
                RECORDINGS.labels(mode, "not_announced").inc()
                log.error("recording_not_announced", announcement=policy.announcement)
                return None
            recording.announcement = announced
        if policy.layout == recording_pb2.CHANNEL_LAYOUT_DUAL:
            try:
                await _record_parties(ari, recording, parties, wait_for, track_id)
            except AriError as exc:
                # Mixed where Asterisk cannot snoop: stop what started, record the bridge.
                log.warning("dual_channel_unavailable", error=str(exc))
                for track in recording.tracks:
                    with contextlib.suppress(AriError):
                        await ari.call(calls.cancel_recording(track.name))
                recording.tracks.clear()
        if not recording.tracks:
            await ari.call(calls.record_bridge(bridge_id, recording_name(call_id)))
            recording.tracks.append(Track(recording_name(call_id), ""))
    except AriError as exc:
        RECORDINGS.labels(mode, "not_started").inc()
        log.error("recording_not_started", mode=mode, error=str(exc))
        return None
    log.info("recording_started", mode=mode, tracks=[t.name for t in recording.tracks])
    return recording
