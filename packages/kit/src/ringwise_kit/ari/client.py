"""The ARI client: REST calls plus the event WebSocket, with reconnect and reconcile.

Asterisk does not buffer events while the WebSocket is down, so after every (re)connect the
client calls the registered reconcile hooks; the owner lists channels and bridges through
REST and rebuilds its state from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from ringwise_kit.ari import calls
from ringwise_kit.ari.calls import RestCall
from ringwise_kit.ari.http import HttpError, KeepAliveHttp
from ringwise_kit.ari.models import AriEvent, Bridge, Channel, Playback, parse_event_json
from ringwise_kit.logs import get_logger

log = get_logger("ringwise_kit.ari")

EventHandler = Callable[[AriEvent], Awaitable[None] | None]
ConnectHook = Callable[[], Awaitable[None]]
T = TypeVar("T", bound=BaseModel)

ARI_CONNECTED = Gauge("ringwise_ari_connected", "1 while the ARI event WebSocket is up")
ARI_RECONNECTS = Counter("ringwise_ari_reconnects_total", "ARI WebSocket (re)connections")
ARI_EVENTS = Counter("ringwise_ari_events_total", "ARI events received", ["type"])
ARI_REST_SECONDS = Histogram(
    "ringwise_ari_rest_seconds",
    "ARI REST call latency",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
)


# Label children resolved once: labels() costs a lock and a dict lookup per call.
_REST_SECONDS_BY_METHOD = {m: ARI_REST_SECONDS.labels(m) for m in ("GET", "POST", "PUT", "DELETE")}


def _decode(call: RestCall, response: tuple[int, bytes] | HttpError) -> Any:
    if isinstance(response, HttpError):
        return AriError(0, str(response), call.method, call.path)
    status, raw = response
    if status >= 400:
        text = raw.decode(errors="replace")
        message = text
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(text).get("message", text)
        error = AriNotFound if status == 404 else AriError
        return error(status, message, call.method, call.path)
    return json.loads(raw) if raw else None


class AriError(Exception):
    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"ARI {method} {path} -> {status}: {message}")
        self.status = status
        self.message = message


class AriNotFound(AriError):
    """The channel, bridge or playback is gone (404), usually because it hung up."""


class AriClient:
    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        request_timeout_s: float = 5.0,
        max_backoff_s: float = 5.0,
        instance: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        # The name other services reach this Asterisk by (AriSettings.asterisk_instance):
        # events that leave a recording in its spool carry it (ringwise_kit.ari.instances).
        self.instance = instance
        self._auth_header = {"Authorization": aiohttp.encode_basic_auth(user, password)}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._request_timeout_s = request_timeout_s
        self._max_backoff_s = max_backoff_s
        self._session: aiohttp.ClientSession | None = None
        self._http: KeepAliveHttp | None = None
        self._handlers: dict[str, list[EventHandler]] = defaultdict(list)
        self._any_handlers: list[EventHandler] = []
        self._connect_hooks: list[ConnectHook] = []
        self._event_counters: dict[str, Any] = {}
        self._ws_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.asterisk_id = ""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, *, events: bool = True) -> None:
        """Open the HTTP session and keep the event WebSocket connected in the background.

        events=False: REST only (a service that calls ARI but does not own the Stasis app;
        a second WebSocket on the app would take events away from routing)."""
        # aiohttp carries the event WebSocket; REST goes through the lean keep-alive client.
        self._session = aiohttp.ClientSession(headers=self._auth_header, timeout=self._timeout)
        self._http = KeepAliveHttp(
            self.base_url, self._auth_header, timeout_s=self._request_timeout_s
        )
        if events:
            self._ws_task = asyncio.create_task(self._ws_loop(), name="ari-events")

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def close(self) -> None:
        self._closing = True
        if self._ws_task:
            self._ws_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ws_task
        if self._session:
            await self._session.close()
        if self._http:
            await self._http.close()
            self._http = None
        self._connected.clear()
        ARI_CONNECTED.set(0)

    # -- events ------------------------------------------------------------------------------

    def on(self, event_type: str, handler: EventHandler) -> None:
        """Call handler for every event of that type (several handlers per type are fine)."""
        self._handlers[event_type].append(handler)

    def on_any(self, handler: EventHandler) -> None:
        self._any_handlers.append(handler)

    def on_connected(self, hook: ConnectHook) -> None:
        """Run hook after each (re)connect, before new events are dispatched (reconcile)."""
        self._connect_hooks.append(hook)

    async def _dispatch(self, event: AriEvent) -> None:
        for handler in (*self._handlers.get(event.type, ()), *self._any_handlers):
            try:
                result = handler(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("ari_handler_failed", event_type=event.type)

    async def _ws_loop(self) -> None:
        assert self._session is not None
        url = self.base_url.replace("http", "ws", 1) + "/ari/events"
        params = {"app": self.app, "subscribeAll": "false"}
        backoff = 0.1
        while not self._closing:
            try:
                async with self._session.ws_connect(
                    url, params=params, heartbeat=15, timeout=aiohttp.ClientWSTimeout(ws_close=5)
                ) as ws:
                    backoff = 0.1
                    info = await self.request("GET", "/asterisk/info")
                    self.asterisk_id = str((info or {}).get("system", {}).get("entity_id", ""))
                    await self._apply_event_filter()
                    log.info("ari_connected", app=self.app, asterisk_id=self.asterisk_id)
                    ARI_RECONNECTS.inc()
                    # Reconcile before dispatching anything new, so state is rebuilt first.
                    for hook in self._connect_hooks:
                        try:
                            await hook()
                        except Exception:
                            log.exception("ari_reconcile_failed")
                    self._connected.set()
                    ARI_CONNECTED.set(1)
                    async for frame in ws:
                        if frame.type is aiohttp.WSMsgType.TEXT:
                            await self._on_frame(frame.data)
                        elif frame.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("ari_connect_failed", error=repr(exc), retry_in_s=backoff)
            if self._connected.is_set():
                log.warning("ari_disconnected")
            self._connected.clear()
            ARI_CONNECTED.set(0)
            if self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    async def _apply_event_filter(self) -> None:
        """Ask Asterisk to send only the event types someone handles (when no on_any handler
        wants everything): Asterisk then builds, and we parse, far fewer events per call."""
        allowed = [] if self._any_handlers else sorted(self._handlers)
        await self.request(
            "PUT",
            f"/applications/{self.app}/eventFilter",
            body={"allowed": [{"type": kind} for kind in allowed], "disallowed": []},
        )

    async def _on_frame(self, text: str) -> None:
        # Asterisk sends only the types someone handles (the event filter), so every frame is
        # validated straight from its text, without a json.loads first.
        try:
            event = parse_event_json(text)
        except Exception as exc:
            log.warning("ari_event_unparsable", error=repr(exc))
            return
        kind = event.type
        counter = self._event_counters.get(kind)
        if counter is None:
            counter = self._event_counters[kind] = ARI_EVENTS.labels(kind)
        counter.inc()
        if self._any_handlers or kind in self._handlers:
            await self._dispatch(event)

    # -- REST --------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | float] | None = None,
        body: Any = None,
    ) -> Any:
        """One ARI REST call; returns the decoded JSON (or None). Raises AriError/AriNotFound."""
        [result] = await self.run_all(RestCall(method, path, params or {}, body))
        if isinstance(result, AriError):
            raise result
        return result

    async def run_all(self, *calls: RestCall) -> list[Any]:
        """Several REST calls in one write (pipelined); Asterisk runs them in order, each on
        its own. Returns, per call, its decoded JSON (or None) or the AriError it got."""
        if self._http is None:
            raise RuntimeError("AriClient is closed (or was never started)")
        started = time.perf_counter()
        responses = await self._http.pipeline(
            [
                (
                    call.method,
                    f"/ari{call.path}",
                    {k: str(v) for k, v in call.params.items()},
                    json.dumps(call.body).encode() if call.body is not None else None,
                )
                for call in calls
            ]
        )
        _REST_SECONDS_BY_METHOD[calls[0].method].observe(time.perf_counter() - started)
        return [_decode(call, response) for call, response in zip(calls, responses, strict=True)]

    async def _model(self, model: type[T], method: str, path: str, **kwargs: Any) -> T:
        return model.model_validate(await self.request(method, path, **kwargs))

    async def list_channels(self) -> list[Channel]:
        return [Channel.model_validate(c) for c in await self.request("GET", "/channels")]

    async def get_channel(self, channel_id: str) -> Channel | None:
        try:
            return await self._model(Channel, "GET", f"/channels/{channel_id}")
        except AriNotFound:
            return None

    async def list_bridges(self) -> list[Bridge]:
        return [Bridge.model_validate(b) for b in await self.request("GET", "/bridges")]

    async def call(self, rest: RestCall) -> Any:
        """One prepared REST call (see ringwise_kit.ari.calls); raises its AriError."""
        [result] = await self.run_all(rest)
        if isinstance(result, AriError):
            raise result
        return result

    async def answer(self, channel_id: str) -> None:
        await self.call(calls.answer(channel_id))

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing (180) to the channel."""
        await self.call(calls.ring(channel_id))

    async def hangup(
        self, channel_id: str, *, reason: str | None = None, reason_code: int | None = None
    ) -> bool:
        """Hang up; False if the channel was already gone. reason_code is a Q.850 cause."""
        try:
            await self.call(calls.hangup(channel_id, reason=reason, reason_code=reason_code))
        except AriNotFound:
            return False
        return True

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        playback_id: str,
        *,
        lang: str = "en",
        skipms: int | None = None,
    ) -> Playback:
        """Start playing; the id is chosen by us so PlaybackFinished cannot race the reply.
        skipms: how far the playback's forward/reverse controls move (Asterisk: 3000)."""
        medias = [media] if isinstance(media, str) else list(media)
        params: dict[str, str | int] = {"media": ",".join(medias), "lang": lang}
        if skipms is not None:
            params["skipms"] = skipms
        return await self._model(
            Playback, "POST", f"/channels/{channel_id}/play/{playback_id}", params=params
        )

    async def control_playback(self, playback_id: str, operation: str) -> bool:
        """pause, unpause, restart, reverse, forward; False if the playback has ended."""
        try:
            await self.request(
                "POST", f"/playbacks/{playback_id}/control", params={"operation": operation}
            )
        except AriNotFound:
            return False
        return True

    async def stop_playback(self, playback_id: str) -> None:
        with contextlib.suppress(AriNotFound):
            await self.request("DELETE", f"/playbacks/{playback_id}")

    async def create_channel(
        self,
        endpoint: str,
        *,
        channel_id: str,
        app_args: Sequence[str] = (),
        originator: str | None = None,
        variables: Mapping[str, str] | None = None,
        formats: str | None = None,
    ) -> Channel:
        """Create (but do not dial) an outgoing channel in our Stasis app."""
        rest = calls.create_channel(
            self.app,
            endpoint,
            channel_id=channel_id,
            app_args=app_args,
            originator=originator,
            variables=variables,
            formats=formats,
        )
        return Channel.model_validate(await self.call(rest))

    async def dial(
        self, channel_id: str, *, caller: str | None = None, timeout_s: int | None = None
    ) -> None:
        params: dict[str, str | int] = {}
        if caller:
            params["caller"] = caller
        if timeout_s:
            params["timeout"] = timeout_s
        await self.request("POST", f"/channels/{channel_id}/dial", params=params)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/variable", params={"variable": name, "value": value}
        )

    async def create_bridge(self, bridge_id: str, bridge_type: str = "mixing") -> Bridge:
        return Bridge.model_validate(await self.call(calls.create_bridge(bridge_id, bridge_type)))

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        await self.call(calls.add_to_bridge(bridge_id, channel_ids))

    async def destroy_bridge(self, bridge_id: str) -> None:
        with contextlib.suppress(AriNotFound):
            await self.call(calls.destroy_bridge(bridge_id))

    async def stored_recording_chunks(
        self, name: str, *, chunk_bytes: int = 1 << 20, read_timeout_s: float = 30.0
    ) -> AsyncIterator[bytes]:
        """Stream a stored recording's file (GET /recordings/stored/{name}/file) in chunks,
        never holding the whole file. Raises AriNotFound if there is no such recording."""
        if self._session is None:
            raise RuntimeError("AriClient is closed (or was never started)")
        path = f"/recordings/stored/{quote(name, safe='')}/file"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=read_timeout_s)
        async with self._session.get(f"{self.base_url}/ari{path}", timeout=timeout) as resp:
            if resp.status >= 400:
                error = AriNotFound if resp.status == 404 else AriError
                raise error(resp.status, await resp.text(), "GET", path)
            async for chunk in resp.content.iter_chunked(chunk_bytes):
                yield chunk

    async def stored_recording_file(self, name: str) -> bytes:
        """A stored recording's whole file (short ones: voicemail messages, prompts).
        Raises AriNotFound if there is no such recording."""
        return b"".join([chunk async for chunk in self.stored_recording_chunks(name)])

    async def delete_stored_recording(self, name: str) -> bool:
        """Delete a stored recording; False if it was already gone."""
        try:
            await self.call(calls.delete_stored_recording(name))
        except AriNotFound:
            return False
        return True

    async def asterisk_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.request("GET", "/asterisk/info")
        return info

    # -- dialplan originates (any service may call these) ----------------------------------

    async def originate_to_dialplan(
        self,
        endpoint: str,
        *,
        context: str,
        extension: str,
        channel_id: str,
        variables: Mapping[str, str] | None = None,
        priority: int = 1,
        timeout_s: int = 10,
    ) -> None:
        """Originate a channel that runs dialplan, not Stasis (e.g. a Local channel running a
        dialplan-only application such as PJSIPNotify)."""
        await self.request(
            "POST",
            f"/channels/{channel_id}",
            params={
                "endpoint": endpoint,
                "context": context,
                "extension": extension,
                "priority": priority,
                "timeout": timeout_s,
            },
            body={"variables": dict(variables or {})},
        )
