"""Request/reply subscriptions that answer several requests at once.

A nats-py subscription runs its callback for one message at a time. The directory's requests
wait on Mongo and, for logins and user creation, on argon2 (slow on purpose), so each request
runs in its own task, at most `limit` at a time; when the limit is reached the subscription
stops taking messages until one finishes (back-pressure instead of an unbounded pile of tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from ringwise.api.v1 import api_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiCall, ApiRouter, problem_reply
from ringwise_kit.logs import get_logger

log = get_logger(__name__)
M = TypeVar("M", bound=Message)


class ConcurrentServer:
    def __init__(self, nc: NatsClient, limit: int) -> None:
        self._nc = nc
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Any] = []

    async def _respond(self, msg: Msg, answer: Callable[[Msg], Awaitable[None]]) -> None:
        try:
            await answer(msg)
        except Exception:
            log.exception("request_failed", subject=msg.subject)
        finally:
            self._slots.release()

    async def subscribe(
        self, subject: str, queue: str, answer: Callable[[Msg], Awaitable[None]]
    ) -> None:
        async def on_message(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._respond(msg, answer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._subscriptions.append(await self._nc.subscribe(subject, queue=queue, cb=on_message))

    async def serve_proto(
        self,
        subject: str,
        queue: str,
        request_type: type[M],
        handler: Callable[[M], Awaitable[Message]],
    ) -> None:
        """Protobuf request/reply with bus.serve's contract: errors go back as a header."""

        async def answer(msg: Msg) -> None:
            request = request_type()
            try:
                request.ParseFromString(msg.data)
                reply = await handler(request)
            except Exception as exc:
                log.warning("request_failed", subject=subject, error=type(exc).__name__)
                if msg.reply:
                    await self._nc.publish(
                        msg.reply, b"", headers={bus.ERROR_HEADER: type(exc).__name__}
                    )
                return
            if msg.reply:
                await self._nc.publish(msg.reply, reply.SerializeToString())

        await self.subscribe(subject, queue, answer)

    async def serve_api(self, service: str, router: ApiRouter) -> None:
        """The gateway's forwarded REST calls (ringwise_kit.api's contract)."""

        async def answer(msg: Msg) -> None:
            request = api_pb2.ApiRequest()
            try:
                request.ParseFromString(msg.data)
            except Exception:
                reply = problem_reply(400, "Bad Request", "malformed ApiRequest")
            else:
                reply = await router.dispatch(ApiCall.from_proto(request))
            if msg.reply:
                await self._nc.publish(msg.reply, reply.SerializeToString())

        await self.subscribe(subjects.api(service), service, answer)

    async def stop(self) -> None:
        """Stop taking requests, then let the ones in hand finish (graceful shutdown)."""
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
