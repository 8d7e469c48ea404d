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

Recordings are mixed (one track). Dual-channel recording through snoop channels is not done
yet: a "dual" policy is recorded mixed, and says so in the event.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient
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
    calls,
)
from ringwise_kit.events import event_header, to_timestamp
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.cdr import CallRecord

log = get_logger(__name__)

RECORDINGS = Counter("ringwise_routing_recordings_total", "Call recordings", ["mode", "outcome"])
ANNOUNCEMENT_TIMEOUT_S = 15.0
FINISH_TIMEOUT_S = 5.0
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


def recording_name(call_id: str) -> str:
    """The stored recording's name on Asterisk (and the archive's recording id)."""
    return f"rw-{call_id}"


@dataclass
class CallRecording:
    """One call's bridge recording, from start to the published RecordingFinished."""

    call_id: str
    name: str
    policy: Policy
    announcement: str = ""

    async def finish(
        self, record: CallRecord, wait_for: WaitFor
    ) -> recording_pb2.RecordingFinished:
        """Once the bridge is gone: wait (briefly) for Asterisk to close the file, then the
        event that hands it to the archive."""

        def closed(event: AriEvent) -> bool:
            return isinstance(event, RecordingFinished | RecordingFailed) and (
                event.recording.name == self.name
            )

        done = await wait_for(closed, FINISH_TIMEOUT_S)
        if isinstance(done, RecordingFailed):
            log.error("recording_failed", name=self.name, cause=done.recording.cause)
        elif done is None:
            log.warning("recording_finish_not_seen", name=self.name)
        mode = recording_pb2.RecordingMode.Name(self.policy.mode)
        RECORDINGS.labels(mode, "failed" if isinstance(done, RecordingFailed) else "done").inc()
        started = record.answered_at or record.started_at
        return recording_pb2.RecordingFinished(
            header=event_header(
                record.tenant_id,
                self.call_id,
                f"recording:{subjects.RECORDING_FINISHED}",
                record.ended_at or started,
            ),
            recording_id=self.name,
            asterisk_name=self.name,
            format="wav",
            mode=self.policy.mode,
            layout=recording_pb2.CHANNEL_LAYOUT_MIXED,
            user_id=record.user_id,
            from_number=record.from_number,
            to_number=record.to_number,
            started_at=to_timestamp(started),
            ended_at=to_timestamp(record.ended_at or started),
            retention_days=self.policy.retention_days,
            source="call",
            announcement=self.announcement,
        )


async def start(
    ari: AriClient,
    call_id: str,
    bridge_id: str,
    policy: Policy,
    wait_for: WaitFor,
) -> CallRecording | None:
    """Announce (compliant) and start recording the bridge; None when the policy records
    nothing or Asterisk refused (the call goes on either way)."""
    if policy.mode not in (
        recording_pb2.RECORDING_MODE_COMPLIANT,
        recording_pb2.RECORDING_MODE_ON_DEMAND,
    ):
        return None
    recording = CallRecording(call_id, recording_name(call_id), policy)
    mode = recording_pb2.RecordingMode.Name(policy.mode)
    try:
        if policy.mode == recording_pb2.RECORDING_MODE_COMPLIANT:
            prompt = f"sound:{policy.announcement or DEFAULT_ANNOUNCEMENT}"
            playback_id = f"{call_id}-announce"
            await ari.call(calls.play_bridge(bridge_id, playback_id, prompt))
            played = await wait_for(
                lambda e: isinstance(e, PlaybackFinished) and e.playback.id == playback_id,
                ANNOUNCEMENT_TIMEOUT_S,
            )
            if played is None:
                # Never record a compliant call whose parties did not hear the announcement.
                RECORDINGS.labels(mode, "not_announced").inc()
                log.error("recording_not_announced", prompt=prompt)
                return None
            recording.announcement = prompt
        await ari.call(calls.record_bridge(bridge_id, recording.name))
    except AriError as exc:
        RECORDINGS.labels(mode, "not_started").inc()
        log.error("recording_not_started", mode=mode, error=str(exc))
        return None
    log.info("recording_started", mode=mode, name=recording.name)
    return recording
