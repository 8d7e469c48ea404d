"""`ringwise-dev up`: the whole platform locally, a demo call, then wait for Ctrl-C.

Prints what happened to the demo call: the routing decision and its reasons, every event
the call published, and the CDR billing stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToDict
from ringwise.events.v1 import call_pb2
from ringwise_kit.logs import configure_logging

from ringwise_dev.asterisk import repo_root
from ringwise_dev.fixture import ALICE, PEOPLE
from ringwise_dev.gateway_client import GatewayClient, GatewayError
from ringwise_dev.platform import OPERATOR_EMAIL, LocalPlatform
from ringwise_dev.ports import DEV_PORTS, HOST
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import call_events, wait_cdrs


def say(text: str = "") -> None:
    print(text, flush=True)


async def demo_call(platform: LocalPlatform) -> bool:
    phone = await platform.sipp.start_phone(
        PhoneKind.ANSWER, ALICE.phone_port(platform.ports), ring_ms=1500
    )
    # The dev platform keeps its data between runs: a caller number of its own per run.
    caller = f"+442079{int(time.time()) % 1_000_000:06d}"
    try:
        say(f"Demo call: {caller} (PSTN) dials {ALICE.number}, {ALICE.name}'s smart number.")
        say(f"  {ALICE.name}'s desk phone (sipp) rings 1.5 s and answers; the caller talks 3 s.")
        result = await platform.sipp.call(ALICE.number, caller=caller, hold_ms=3000)
        [call] = result.calls
        say(
            f"  caller saw: {' '.join(map(str, call.provisional))} then {call.final_code}; "
            f"post-dial delay {call.pdd_ms or 0:.1f} ms"
        )
        cdr = (await wait_cdrs(platform, caller))[-1]
    finally:
        await phone.stop()
    events = await call_events(platform, cdr["call_id"])
    say()
    say(f"Events of call {cdr['call_id']} on JetStream (ringwise.v1.call.<tenant>.<event>):")
    for event in events:
        name = type(event).__name__
        say(f"  {name:<13} at {event.header.occurred_at.ToDatetime().time()}")
        if isinstance(event, call_pb2.CallRouted):
            decision: dict[str, Any] = MessageToDict(event.decision)
            say(f"    decision: {decision.get('action')} {decision.get('targets')}")
            for reason in decision.get("reasons", []):
                say(f"    because: {reason}")
    say()
    say("CDR stored by billing (GET /v1/cdrs):")
    for key in (
        "call_id", "tenant_id", "from_number", "to_number", "user_id", "device_id",
        "started_at", "answered_at", "ended_at", "billable_seconds", "duration_ms",
        "disposition", "hangup_by", "hangup_cause",
    ):  # fmt: skip
        say(f"  {key:<17} {cdr[key]}")
    return bool(cdr["disposition"] == "DISPOSITION_ANSWERED")


def print_endpoints(platform: LocalPlatform) -> None:
    ports = platform.ports
    say()
    say("Ringwise is running (all on 127.0.0.1):")
    say(f"  PSTN trunk (SIP/UDP)  {HOST}:{ports.sip}  (send from 127.0.0.2)")
    say(f"  Asterisk ARI          {platform.asterisk.ari_url}")
    for name in platform.services:
        say(f"  {name:<21} {platform.service_url(name)}  (/metrics /healthz /readyz)")
    endpoints = platform.infra.endpoints
    say(f"  NATS {endpoints.nats_url}   Redis {endpoints.redis_url}")
    say(f"  Mongo-wire {endpoints.mongo_url}   S3 {endpoints.s3_endpoint}")
    say(f"  SMTP sink {HOST}:{ports.smtp}")
    say(f"  Numbers: {', '.join(f'{p.number} ({p.user_id})' for p in PEOPLE)}")
    say(f"  Logs and data: {platform.data_dir}")
    say(f"  Public API {platform.service_url('gateway', '/v1')}  (OpenAPI: /v1/openapi.json)")
    say(f"  Operator sign-in: {OPERATOR_EMAIL} / {platform.operator_password}  (this run only)")


async def demo_api(platform: LocalPlatform) -> bool:
    """The operator signs in through the gateway and lists the tenants."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        client = GatewayClient(session, platform.service_url("gateway"))
        try:
            await client.login(OPERATOR_EMAIL, platform.operator_password)
            page = await client.call("GET", "/v1/tenants")
        except (GatewayError, aiohttp.ClientError) as exc:
            say(f"API demo failed: {exc}")
            return False
    names = ", ".join(f"{t['tenant_id']} ({t['name']})" for t in page["items"])
    say(f"API: the operator signed in through the gateway; tenants: {names}")
    return True


async def up(once: bool) -> int:
    platform = LocalPlatform(DEV_PORTS, repo_root() / ".run" / "dev", "dev")
    say("Starting NATS, Redis, Mongo-wire, S3, SMTP, Asterisk 22 and the services...")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await platform.start()
    try:
        print_endpoints(platform)
        say()
        ok = await demo_call(platform)
        say()
        ok = await demo_api(platform) and ok
        if once:
            return 0 if ok else 1
        say()
        say("Press Ctrl-C to stop everything.")
        await stop.wait()
        return 0
    finally:
        say("Stopping...")
        with contextlib.suppress(Exception):
            await platform.stop()
        say("Stopped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringwise-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run the platform locally and place a demo call")
    up_parser.add_argument("--once", action="store_true", help="stop after the demo call")
    args = parser.parse_args(argv)
    configure_logging("ringwise-dev", "error")  # the services log to .run/dev/logs
    if args.command == "up":
        return asyncio.run(up(args.once))
    return 2


if __name__ == "__main__":
    sys.exit(main())
