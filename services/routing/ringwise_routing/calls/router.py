"""Hands every ARI event of our Stasis app to the call it belongs to.

New inbound channels (StasisStart with args ["inbound"]) start a CallSession, calls placed
by phones (args ["outbound"]) an OutboundCall (outbound_call.py), calls placed through the
API start here too (start_callback, click_to_dial/call.py); a phone calling another
user's extension is handed from there to start_internal_call(); every other event is
routed by channel id (or a playback's target channel). After an ARI (re)connect, reconcile()
compares what Asterisk has with what we track, and adopts or ends the calls an earlier
instance left in Redis (calls/adopted.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import Counter, Gauge
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit.ari import (
    AriClient,
    AriEvent,
    Channel,
    Dial,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    StasisStart,
)
from ringwise_kit.logs import get_logger

from ringwise_routing.calls import policy
from ringwise_routing.calls.adopted import AdoptedCall, adoptable, end_orphaned
from ringwise_routing.calls.call_state import CallStateStore, on_this_asterisk
from ringwise_routing.calls.directory_client import NumberDirectory
from ringwise_routing.calls.outbound_call import OutboundCall, OutboundServices
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.recording import RecordingPolicies
from ringwise_routing.calls.session import CallServices, CallSession, InternalCall
from ringwise_routing.calls.voicemail_step import VoicemailStep
from ringwise_routing.click_to_dial.call import CallbackCall
from ringwise_routing.click_to_dial.status import CallStatusStore
from ringwise_routing.plans.model import Terminal
from ringwise_routing.plans.outbound import OutboundPlan
from ringwise_routing.profiles.defaults import DefaultProfiles
from ringwise_routing.profiles.source import ProfileSource, UserReply, UserRouting
from ringwise_routing.provisioning.edge import PhonesViaEdge

log = get_logger(__name__)

# The only ARI events a call session waits for: Asterisk sends no others (the client's event
# filter). A channel of ours leaves the app only by hanging up (nothing here continues one in
# the dialplan): its ChannelHangupRequest is the first sign, before anything the hang-up
# stops (a voicemail recording's RecordingFinished: the deposit relies on that order), and
# ChannelDestroyed the last (for a channel that never got a hang-up request). The StasisEnd
# between them says nothing new, so Asterisk is not asked for it (one frame less a channel).
ROUTED_EVENT_TYPES = (
    "StasisStart",
    "ChannelHangupRequest",
    "ChannelDestroyed",
    "Dial",
    "PlaybackFinished",
    # The voicemail step (voicemail_step.py): "#" to skip/finish, recording outcomes;
    # call recording (recording.py): the keep feature code, the tracks' outcomes.
    "ChannelDtmfReceived",
    "RecordingFinished",
    "RecordingFailed",
)

ACTIVE_CALLS = Gauge("ringwise_routing_active_calls", "Calls being handled by this instance")
# Anything but zero means an instance stopped with calls in flight, or lost its Asterisk.
ORPHANS = Counter(
    "ringwise_routing_orphans_total",
    "Calls and channels found without an owner at an ARI (re)connect, by what became of them",
    ["outcome"],
)

# Callers of calls this instance ended lately: their hang-up may still be under way when a
# reconnect lists the channels, and such a channel must not be routed again.
ENDED_CALLERS_KEPT = 4096


def _unrouted_caller_args(orphan: Channel) -> list[str] | None:
    """The Stasis args of an orphan of our app that is an inbound caller still waiting,
    unanswered (a call whose routing never got as far as storing its state); else None."""
    args = orphan.dialplan.app_data.split(",")[1:]
    return args if orphan.state == "Ring" and args[:1] == ["inbound"] else None


def _event_channel(event: AriEvent) -> str | None:
    if isinstance(event, Dial):
        return event.peer.id
    if isinstance(event, PlaybackFinished | RecordingFinished | RecordingFailed):
        media = event.playback if isinstance(event, PlaybackFinished) else event.recording
        target = media.target_uri
        # A bridge's media (the recording announcement, a mixed call recording) goes to the
        # call owning the bridge; a channel's (voicemail deposit, snoop track) to the channel's.
        return target.split(":", 1)[1] if target.startswith(("channel:", "bridge:")) else None
    channel = getattr(event, "channel", None)
    return channel.id if channel is not None else None


class Tracked(Protocol):
    """A call this instance follows: a session it runs, or a conversation it adopted."""

    call_id: str
    caller_id: str
    channels: set[str]

    def feed(self, event: AriEvent) -> None: ...

    def gone_during_outage(self) -> None: ...

    async def run(self) -> None: ...


class CallRouter:
    def __init__(
        self,
        ari: AriClient,
        directory: NumberDirectory,
        publisher: EventPublisher,
        voicemail: VoicemailStep | None = None,
        recording_policies: RecordingPolicies | None = None,
        *,
        profiles: ProfileSource | None = None,
        outbound: OutboundServices | None = None,
        trunk_dial: Callable[[str], str] = lambda _number: "",
        call_state: CallStateStore | None = None,
        phones: PhonesViaEdge | None = None,
    ) -> None:
        self._ari = ari
        self._publisher = publisher
        self._call_state = call_state
        # Calls placed by phones (outbound_call.py); None: refused (not wired). An extension
        # dialled there continues here (start_internal_call).
        self._outbound = (
            replace(outbound, hand_over_internal=self.start_internal_call) if outbound else None
        )
        self._services = CallServices(
            ari=ari,
            directory=directory,
            publisher=publisher,
            profiles=profiles if profiles is not None else DefaultProfiles(trunk_dial),
            trunk_dial=trunk_dial,
            voicemail=voicemail,
            recording_policies=recording_policies,
            call_state=call_state,
            phones=phones or PhonesViaEdge(),
        )
        self._by_channel: dict[str, Tracked] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended_callers: deque[str] = deque(maxlen=ENDED_CALLERS_KEPT)
        for event_type in ROUTED_EVENT_TYPES:
            ari.on(event_type, self.on_event)
        ari.on_connected(self.reconcile)

    @property
    def active_calls(self) -> int:
        return len(self._tasks)

    def on_event(self, event: AriEvent) -> None:
        if isinstance(event, Dial) and not event.dialstatus:
            # A dial has begun: no call waits for that (only for ringing, answer or a
            # final status), so it wakes none of them.
            return
        if isinstance(event, StasisStart) and event.args[:1] == ["inbound"]:
            # Tracked already: reconcile() listed the caller before this event came, and
            # routed it afresh.
            if event.channel.id not in self._by_channel:
                self._start_call(event)
            return
        if isinstance(event, StasisStart) and event.args[:1] == ["outbound"]:
            self._start_outbound(event)
            return
        channel_id = _event_channel(event)
        session = self._by_channel.get(channel_id) if channel_id is not None else None
        if session is None and isinstance(event, RecordingFinished | RecordingFailed):
            # A call recording's track is registered by name too (its target may be gone).
            session = self._by_channel.get(event.recording.name)
        if log.is_enabled_for(logging.DEBUG):  # its arguments cost more than the lookup
            log.debug(
                "ari_event",
                type=event.type,
                channel_id=channel_id,
                call_id=session.call_id if session else None,
                dialstatus=getattr(event, "dialstatus", None),
                cause=getattr(event, "cause", None),
            )
        if session is not None:
            session.feed(event)

    def _register(self, channel_id: str, session: Tracked) -> None:
        self._by_channel[channel_id] = session

    def _start_outbound(self, start: StasisStart) -> None:
        if self._outbound is None:  # not wired (tests of the inbound side only)
            log.error("outbound_calls_not_wired", channel_id=start.channel.id)
            return
        self._track(OutboundCall(start, self._outbound, self._register))

    def _start_call(self, start: StasisStart) -> None:
        self._track(CallSession(start, self._services, self._register))

    def start_internal_call(
        self,
        start: StasisStart,
        caller: resolve_pb2.ResolveNumberReply,
        callee: resolve_pb2.ResolveNumberReply,
    ) -> str:
        """Run the callee's routing plan for a call placed by a user's own phone.

        For the outbound/extension executor: `start` is the StasisStart of the calling phone's
        channel (already in our Stasis app; do not answer or ring it, the plan does), `caller`
        the directory's reply for the calling user (resolve_user by sip_username), `callee` the
        reply for the dialled user (resolve_user by extension), both STATUS_FOUND in the same
        tenant. From then on this router owns the channel: every ARI event of it goes to the
        new session, which plans with Caller(internal_user_id=caller.user_id) (screening may
        be skipped for internal callers), rings, bridges, hangs up, and publishes CallStarted
        / CallRouted / CallEnded with direction INTERNAL (from: the caller's extension, to:
        the callee's). Returns the call id. Call it from the event loop, before awaiting
        anything else for that channel, so no event of it is missed.
        """
        session = CallSession(
            start, self._services, self._register, InternalCall(caller=caller, callee=callee)
        )
        self._track(session)
        return session.call_id

    @property
    def ari_connected(self) -> bool:
        return self._ari.connected

    def start_callback(
        self,
        *,
        call_id: str,
        user: UserReply,
        routing: UserRouting,
        plan: OutboundPlan,
        terminal: Terminal,
        dialled: str,
        status: CallStatusStore,
    ) -> bool:
        """Start a click-to-dial call (click_to_dial/call.py): the user's terminal rings
        first, then the plan runs like a phone's outbound call. False when calls placed by
        users are not wired here."""
        if self._outbound is None:
            return False
        self._track(
            CallbackCall(
                self._outbound,
                self._register,
                call_id=call_id,
                user=user,
                routing=routing,
                plan=plan,
                terminal=terminal,
                dialled=dialled,
                status=status,
            )
        )
        return True

    def _track(self, session: Tracked) -> None:
        self._register(session.caller_id, session)
        for channel_id in session.channels:
            self._register(channel_id, session)
        task = asyncio.create_task(session.run(), name=f"call-{session.call_id}")
        self._tasks.add(task)
        ACTIVE_CALLS.set(len(self._tasks))

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._ended_callers.append(session.caller_id)
            for channel_id in session.channels:
                if self._by_channel.get(channel_id) is session:
                    del self._by_channel[channel_id]
            ACTIVE_CALLS.set(len(self._tasks))

        task.add_done_callback(done)

    async def reconcile(self) -> None:
        """Asterisk sent no events while the link was down: compare and repair.

        - A call we track whose caller channel is gone ended during the outage: finish it.
        - A call an earlier instance left in Redis: adopted if still bridged (its CDR is
          published when it ends), else ended now (calls/adopted.py).
        - An inbound caller nobody owns, still waiting unanswered: its routing ended (a crash,
          a shutdown, or it entered Stasis while the link was down) before the call's state
          was stored, so nothing rang and nothing was published yet: it is routed afresh,
          as if its StasisStart came now (the CDR keeps the channel's creation time).
        - Any other channel in our app that nobody owns: hung up if it is not bridged, so
          nothing rings forever; a bridged one is left to end by itself.
        """
        channels = await self._ari.list_channels()
        present = {channel.id for channel in channels}
        sessions = {id(s): s for s in self._by_channel.values()}
        for session in sessions.values():
            if session.caller_id not in present:
                session.gone_during_outage()
        bridges = await self._ari.list_bridges()
        bridged = {cid for bridge in bridges if len(bridge.channels) > 1 for cid in bridge.channels}
        try:
            info = await self._ari.asterisk_info()
            here = str(info.get("system", {}).get("entity_id", ""))
        except Exception as exc:
            log.warning("asterisk_id_unknown", error=repr(exc))
            here = ""
        taken_over = await self._take_over_stored_calls(present, bridged, here)
        orphans = [
            channel
            for channel in channels
            if channel.id not in self._by_channel
            and channel.id not in taken_over
            and channel.dialplan.app_name == "Stasis"
            and channel.dialplan.app_data.split(",", 1)[0] == self._ari.app
        ]
        ended = set(self._ended_callers)
        routed_afresh = 0
        for channel in orphans:
            if channel.id in bridged:
                log.warning("orphan_bridged_channel_left_up", channel_id=channel.id)
                ORPHANS.labels("left_bridged").inc()
                continue
            args = _unrouted_caller_args(channel)
            if args is not None and channel.id not in ended:
                log.warning("orphan_call_routed_afresh", channel_id=channel.id)
                routed_afresh += 1
                ORPHANS.labels("routed_afresh").inc()
                self._start_call(
                    StasisStart(
                        timestamp=datetime.now(UTC),
                        application=self._ari.app,
                        asterisk_id=here,
                        args=args,
                        channel=channel,
                    )
                )
                continue
            log.warning("orphan_channel_hung_up", channel_id=channel.id, state=channel.state)
            ORPHANS.labels("hung_up").inc()
            await self._ari.hangup(channel.id, reason_code=policy.CAUSE_PLATFORM_FAILURE)
        log.info(
            "ari_reconciled",
            channels=len(channels),
            orphans=len(orphans),
            routed_afresh=routed_afresh,
        )

    async def _take_over_stored_calls(
        self, present: set[str], bridged: set[str], here: str
    ) -> set[str]:
        """Adopt or end the calls earlier instances left in Redis; the channels they held."""
        store = self._call_state
        if store is None:
            return set()
        try:
            stored_calls = await store.all()
        except Exception as exc:
            log.error("call_state_unreadable", error=repr(exc))
            return set()
        ours = {s.call_id for s in self._by_channel.values()}
        taken_over: set[str] = set()
        for stored in stored_calls:
            if stored.record.call_id in ours or not on_this_asterisk(stored, here):
                continue
            taken_over.update(stored.channels)
            if adoptable(stored, present, bridged.__contains__):
                self._track(AdoptedCall(stored, self._ari, self._publisher, store))
                ORPHANS.labels("adopted").inc()
                continue
            try:
                await end_orphaned(stored, present, self._ari, self._publisher, store)
                ORPHANS.labels("ended").inc()
            except Exception:
                log.exception("orphaned_call_not_ended", call_id=stored.record.call_id)
        return taken_over

    async def drain(self, timeout_s: float) -> None:
        """At shutdown, give calls in progress a moment to finish their current step."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def abandon(self) -> None:
        """Stop tracking calls still in progress (shutdown): their channels stay in Asterisk."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
