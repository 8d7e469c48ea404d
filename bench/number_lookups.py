"""Benchmark: routing's number lookups — from its Redis cache, its in-process copy, and the
directory over NATS — beside a bare Redis GET of the same entry, in one run.

Target (issue #4): a lookup served from the Redis cache has p99 <= 2 ms, and a change made
through the API invalidates it (the next lookup sees the new owner).

    uv run python bench/number_lookups.py            # 20000 lookups per path
    uv run python bench/number_lookups.py --quick    # 2000 (CI smoke run)

It starts NATS, Redis and the Mongo-wire DB plus the directory service on its own ports
(base 28000, like bench/call_paths.py: run them one after the other), loads the demo fixture
and looks up Alice's number with routing's own NumberDirectory. Sequential lookups give the
latency of one lookup; a second pass runs 50 at once (a burst of calls arriving together).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from ringwise_dev.asterisk import repo_root
from ringwise_dev.fixture import ALICE, BOB, TENANT, write_fixture
from ringwise_dev.infra import Infra
from ringwise_dev.ports import BENCH_PORTS
from ringwise_dev.services import service_process
from ringwise_dev.sipp import percentile
from ringwise_kit import bus
from ringwise_kit.api import ApiCall, call_service, service_principal
from ringwise_routing.calls.directory_client import NumberDirectory, cache_key

TARGET_P99_MS = 2.0
CONCURRENCY = 50


def stats(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50": percentile(samples_ms, 50) or 0.0,
        "p99": percentile(samples_ms, 99) or 0.0,
        "max": max(samples_ms),
    }


async def timed(n: int, op: Callable[[], Awaitable[Any]], concurrency: int = 1) -> list[float]:
    samples: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await op()
            samples.append((time.perf_counter() - started) * 1000)

    share = n // concurrency
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))
    return samples


async def invalidation(nc: Any, lookups: NumberDirectory, number: str) -> dict[str, Any]:
    """Move the number between two users through directory's API operation (as the gateway
    forwards it) and time how long the cached lookup keeps answering the old owner."""
    owners = (BOB.user_id, ALICE.user_id) * 10
    waits: list[float] = []
    stale = 0
    for owner in owners:
        await lookups.resolve(number)  # cached before the change
        current = await call_service(nc, "directory", directory_call("getNumber", number))
        etag = dict(current.headers).get("ETag", "")
        call = directory_call(
            "updateNumber",
            number,
            body={"assignment": {"type": "user", "id": owner}},
            if_match=etag,
        )
        reply = await call_service(nc, "directory", call)
        if reply.status != 200:
            raise RuntimeError(f"updateNumber -> {reply.status}: {reply.body!r}")
        replied = time.perf_counter()
        while getattr(await lookups.resolve(number), "user_id", None) != owner:
            stale += 1
            if time.perf_counter() - replied > 5:
                return {"changes": len(waits), "all_seen": False, "stale_after_reply": stale,
                        "p50_ms": 0.0, "max_ms": 5000.0}  # fmt: skip
            await asyncio.sleep(0.0005)
        waits.append((time.perf_counter() - replied) * 1000)
    return {
        "changes": len(owners),
        "all_seen": True,
        "stale_after_reply": stale,
        "p50_ms": percentile(waits, 50) or 0.0,
        "max_ms": max(waits),
    }


def directory_call(operation: str, number: str, *, body: Any = None, if_match: str = "") -> ApiCall:
    return ApiCall(
        operation=operation,
        principal=service_principal("bench"),
        path_params={"tenant_id": TENANT, "number": number},
        body=json.dumps(body).encode() if body is not None else b"",
        if_match=if_match,
    )


async def run(args: argparse.Namespace) -> int:
    n: int = args.lookups
    data_dir = repo_root() / ".run" / "bench-lookups"
    shutil.rmtree(data_dir, ignore_errors=True)
    infra = Infra(BENCH_PORTS, data_dir / "infra")
    await infra.start()
    fixture = write_fixture(BENCH_PORTS, data_dir / "fixture.json")
    directory = service_process(
        "directory",
        BENCH_PORTS,
        data_dir / "logs",
        {
            "RINGWISE_LOG_LEVEL": "warning",
            "RINGWISE_NATS_URL": infra.endpoints.nats_url,
            "RINGWISE_MONGO_URL": infra.endpoints.mongo_url,
            "RINGWISE_REDIS_URL": infra.endpoints.redis_url,
            "RINGWISE_DIRECTORY_FIXTURE": str(fixture),
        },
    )
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "lookups": n}
    try:
        await directory.start_and_wait()
        nc = await bus.connect(infra.endpoints.nats_url, "bench-lookups")
        redis = aioredis.from_url(infra.endpoints.redis_url)
        via_redis = NumberDirectory(nc, redis, local_ttl_s=0)
        in_process = NumberDirectory(nc, redis, local_ttl_s=60)
        uncached = NumberDirectory(nc, redis, local_ttl_s=0)
        for d in (via_redis, in_process, uncached):
            await d.start()
        number = ALICE.number
        key = cache_key(number)
        first = await via_redis.resolve(number)  # fills the Redis cache
        assert getattr(first, "user_id", None) == ALICE.user_id, first

        async def redis_get() -> Any:
            return await redis.get(key)

        async def directory_over_nats() -> Any:
            await redis.delete(key)
            return await uncached.resolve(number)

        async def redis_lookup() -> Any:
            return await via_redis.resolve(number)

        async def memory_lookup() -> Any:
            return await in_process.resolve(number)

        paths: dict[str, Callable[[], Awaitable[Any]]] = {
            "bare Redis GET (baseline)": redis_get,
            "lookup, Redis cache": redis_lookup,
            "lookup, in-process copy": memory_lookup,
            "lookup, directory over NATS (uncached; includes a Redis DEL)": directory_over_nats,
        }
        table: dict[str, Any] = {}
        for concurrency in (1, CONCURRENCY):
            for name, op in paths.items():
                await timed(min(n, 500), op, concurrency)  # warm up
                count = n if "NATS" not in name else max(n // 4, concurrency)
                table[f"{name} x{concurrency}"] = stats(await timed(count, op, concurrency))
        results["paths"] = table
        results["invalidation"] = await invalidation(nc, via_redis, number)
        print(f"number_lookups: {n} lookups per path, sequential (x1) and {CONCURRENCY} at once")
        print(f"{'path':<72} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, row in table.items():
            print(f"{name:<72} {row['p50']:8.3f} {row['p99']:8.3f} {row['max']:8.2f}")
        base = table["bare Redis GET (baseline) x1"]["p99"]
        cached = table["lookup, Redis cache x1"]["p99"]
        print(f"ratio p99 lookup via Redis / bare Redis GET: {cached / base:.2f}")
        moved = results["invalidation"]
        print(
            f"invalidation: {moved['changes']} owner changes through the API; the next lookup "
            f"saw the new owner after p50 {moved['p50_ms']:.2f} ms, max {moved['max_ms']:.2f} ms "
            f"(stale answers served after the API replied: {moved['stale_after_reply']})"
        )
        verdict = "PASS" if cached <= TARGET_P99_MS and moved["all_seen"] else "FAIL"
        print(
            f"{verdict}: lookup from the Redis cache p99 {cached:.3f} ms <= {TARGET_P99_MS} ms, "
            "and every change through the API reached the cached lookups"
        )
        results["verdict"] = verdict
        await redis.aclose()
        await nc.drain()
    finally:
        await directory.stop()
        await infra.stop()
    out = repo_root() / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"number_lookups-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 lookups per path")
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.quick:
        args.lookups = 2000
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
