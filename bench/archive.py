"""Benchmark: archiving a recording against raw boto3 puts of the same file to the same S3.

On one S3 server (SeaweedFS with Object Lock) and one Asterisk, in one run, alternating:

  (a) raw     boto3 put_object of the WAV file from disk into the bucket (one PUT)
  (b) archive the recording service's Archiver: ARI GET /recordings/stored/{name}/file
              (streamed) -> SHA-256 + AES-256-GCM envelope -> multipart upload with Object
              Lock COMPLIANCE + SSE -> verify -> DELETE from Asterisk; metadata in Mongo

and reports MB/s of each, the ratio b/a (target >= 0.9), and the peak resident memory the
archive added while archiving a small and a large file (flat in the file size = the target).

    uv run python bench/archive.py               # 200 MB file, 5 rounds
    uv run python bench/archive.py --mb 50 --rounds 2

It starts its own infrastructure and Asterisk on PortPlan(14000) (data under
.run/bench-archive, wiped at the start). Everything shares this machine's cores.
Exit status: 0 when the run completed (PASS/FAIL lines are informative), 1 when it broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
import wave
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pymongo import AsyncMongoClient
from ringwise.events.v1 import call_pb2, recording_pb2
from ringwise_dev.asterisk import AsteriskInstance, repo_root
from ringwise_dev.infra import Infra
from ringwise_dev.ports import PortPlan
from ringwise_kit.ari import AriInstances
from ringwise_kit.config import AriSettings
from ringwise_kit.events import to_timestamp
from ringwise_recording.archive.archiver import Archiver
from ringwise_recording.archive.bucket import S3Settings, WormBucket
from ringwise_recording.archive.consumer import AriRecordings
from ringwise_recording.archive.envelope import PlatformKey, WrappingKey
from ringwise_recording.recordings.store import RecordingStore

PORTS = PortPlan(14000)
INSTANCE = "bench14000"
BUCKET = "bench-recordings"
MB = 1024 * 1024
SMALL_MB = 50
TARGET_RATIO = 0.9


class PlatformKeyOnly:
    def __init__(self) -> None:
        self.key = PlatformKey("bench", os.urandom(32))

    async def wrapping_key(self, tenant_id: str) -> WrappingKey:
        return self.key


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def write_wav(path: Path, size: int) -> None:
    frames = (size - 44) // 2
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        left = frames
        while left:
            n = min(left, MB)
            w.writeframes(os.urandom(n * 2))
            left -= n


def event_for(name: str) -> recording_pb2.RecordingFinished:
    now = datetime.now(UTC)
    return recording_pb2.RecordingFinished(
        header=call_pb2.EventHeader(
            event_id=f"{name}:finished",
            tenant_id="bench",
            call_id=name,
            occurred_at=to_timestamp(now),
        ),
        recording_id=name,
        asterisk_name=name,
        format="wav",
        mode=recording_pb2.RECORDING_MODE_COMPLIANT,
        started_at=to_timestamp(now),
        ended_at=to_timestamp(now),
        retention_days=1,
    )


class Bench:
    def __init__(self, infra: Infra, asterisk: AsteriskInstance, work: Path) -> None:
        self.infra = infra
        self.asterisk = asterisk
        self.work = work
        ep = infra.endpoints
        self.s3 = S3Settings(
            ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key, ep.s3_region, BUCKET
        )
        self.bucket = WormBucket(self.s3)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ep.mongo_url, tz_aware=True)
        self.store = RecordingStore(self.mongo, "bench_recording")
        self.ari = AriInstances(
            ari_settings(asterisk.ari_url, asterisk.ari_user, asterisk.ari_password)
        )
        self.spool = asterisk.host_dir / "spool" / "recording"

    async def start(self) -> None:
        await self.bucket.create_worm()
        await self.bucket.check_worm()
        await self.store.ensure_indexes()
        self.spool.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        await self.ari.close()
        await self.mongo.close()
        self.bucket.close()

    async def raw_put(self, source: Path) -> float:
        key = f"raw/{uuid.uuid4().hex}.wav"
        client = self.bucket.client

        def put() -> None:
            with source.open("rb") as f:
                client.put_object(Bucket=BUCKET, Key=key, Body=f)

        t0 = time.perf_counter()
        await asyncio.to_thread(put)
        return time.perf_counter() - t0

    async def archive(self, source: Path) -> float:
        """Seconds to archive the file."""
        name = f"bench-{uuid.uuid4().hex[:12]}"
        # A hard link: Asterisk serves (and finally deletes) it; the master copy stays.
        os.link(source, self.spool / f"{name}.wav")
        archiver = Archiver(self.store, self.bucket, AriRecordings(self.ari), PlatformKeyOnly())
        t0 = time.perf_counter()
        doc = await archiver.archive(event_for(name))
        elapsed = time.perf_counter() - t0
        assert doc["state"] == "archived", doc["state"]
        assert doc["size"] == source.stat().st_size
        return elapsed

    def child_config(self) -> dict[str, Any]:
        ep = self.infra.endpoints
        return {
            "s3": [ep.s3_endpoint, ep.s3_access_key, ep.s3_secret_key, ep.s3_region],
            "mongo": ep.mongo_url,
            "ari": [self.asterisk.ari_url, self.asterisk.ari_user, self.asterisk.ari_password],
            "spool": str(self.spool),
        }


def ari_settings(url: str, user: str, password: str) -> AriSettings:
    return AriSettings(
        ari_url=url, ari_user=user, ari_password=SecretStr(password), ari_app="ringwise"
    )


async def child(config_path: Path, source: Path) -> None:
    """One archive in a fresh process: its memory high-water marks are the archive's own."""
    config = json.loads(config_path.read_text())
    tracemalloc.start()
    endpoint, access_key, secret_key, region = config["s3"]
    s3 = S3Settings(endpoint, access_key, secret_key, region, BUCKET)
    bucket = WormBucket(s3)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config["mongo"], tz_aware=True)
    ari_url, ari_user, ari_password = config["ari"]
    ari = AriInstances(ari_settings(ari_url, ari_user, ari_password))
    name = f"bench-{uuid.uuid4().hex[:12]}"
    os.link(source, Path(config["spool"]) / f"{name}.wav")
    archiver = Archiver(
        RecordingStore(mongo, "bench_recording"), bucket, AriRecordings(ari), PlatformKeyOnly()
    )
    before_kib = proc_status_kib("VmRSS")
    tracemalloc.reset_peak()
    doc = await archiver.archive(event_for(name))
    _, python_peak = tracemalloc.get_traced_memory()
    assert doc["state"] == "archived"
    print(
        json.dumps(
            {
                "python_peak_bytes": python_peak,
                "rss_before_kib": before_kib,
                "rss_peak_kib": proc_status_kib("VmHWM"),
            }
        )
    )
    await ari.close()
    await mongo.close()
    bucket.close()


async def memory_of(bench: Bench, source: Path, config: Path) -> dict[str, int]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, __file__, "--child-config", str(config), "--file", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"archive child failed: {done.stderr[-2000:]}")
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def run(args: argparse.Namespace) -> int:
    data = repo_root() / ".run" / "bench-archive"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    size = args.mb * MB
    print(
        f"archive: {os.cpu_count()} cores shared by Asterisk, SeaweedFS, the Mongo-wire DB and "
        f"this process; {args.mb} MB file, {args.rounds} rounds; ratios from one run.",
        flush=True,
    )
    infra = Infra(PORTS, data / "infra")
    asterisk = AsteriskInstance(PORTS, INSTANCE)
    bench: Bench | None = None
    try:
        await asyncio.gather(infra.start(), asterisk.start())
        bench = Bench(infra, asterisk, data)
        await bench.start()
        big, small = data / "big.wav", data / "small.wav"
        await asyncio.to_thread(write_wav, big, size)
        await asyncio.to_thread(write_wav, small, SMALL_MB * MB)
        # Warm-up: connections, imports, the first S3 volume allocation.
        await bench.raw_put(small)
        await bench.archive(small)
        raw_s: list[float] = []
        archive_s: list[float] = []
        for round_no in range(1, args.rounds + 1):
            # Alternate which goes first, so a burst of load from elsewhere hits both alike.
            if round_no % 2:
                raw = await bench.raw_put(big)
                archived = await bench.archive(big)
            else:
                archived = await bench.archive(big)
                raw = await bench.raw_put(big)
            raw_s.append(raw)
            archive_s.append(archived)
            print(
                f"round {round_no}: raw put {size / MB / raw:7.1f} MB/s ({raw:.2f} s)   "
                f"archive {size / MB / archived:7.1f} MB/s ({archived:.2f} s)   "
                f"ratio {raw / archived:.2f}",
                flush=True,
            )
        config = data / "child.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(bench.child_config(), f)
        memory = {
            "small": await memory_of(bench, small, config),
            "big": await memory_of(bench, big, config),
        }
    except Exception as exc:
        print(f"archive bench broke: {exc!r}", file=sys.stderr)
        return 1
    finally:
        if bench is not None:
            await bench.close()
        await asyncio.gather(asterisk.stop(), infra.stop(), return_exceptions=True)
    raw_mbs = size / MB / statistics.median(raw_s)
    archive_mbs = size / MB / statistics.median(archive_s)
    # The verdict: the median of the per-round (paired) ratios.
    ratio = statistics.median(r / a for r, a in zip(raw_s, archive_s, strict=True))
    print()
    print(f"raw boto3 put (median)   {raw_mbs:7.1f} MB/s")
    print(f"archive (median)         {archive_mbs:7.1f} MB/s")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(
        f"{verdict} archive/raw throughput = {ratio:.2f} (median of the per-round ratios; "
        f"target >= {TARGET_RATIO})"
    )
    for label, file_mb in (("small", SMALL_MB), ("big", args.mb)):
        m = memory[label]
        print(
            f"archiving a {file_mb:4d} MB file in a fresh process: peak Python heap "
            f"{m['python_peak_bytes'] / MB:6.1f} MiB, peak RSS {m['rss_peak_kib'] / 1024:6.1f} MiB "
            f"(RSS before the archive {m['rss_before_kib'] / 1024:.1f} MiB)"
        )
    growth = (memory["big"]["python_peak_bytes"] - memory["small"]["python_peak_bytes"]) / MB
    # Flat = the larger file costs no more than one upload part more (8 MiB) at the peak.
    flat = "PASS" if growth <= 8 else "FAIL"
    print(
        f"{flat} memory flat in the file size: {args.mb} MB vs {SMALL_MB} MB file, "
        f"peak heap {growth:+.1f} MiB"
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=200, help="size of the big recording (MB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child-config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_config:
        asyncio.run(child(args.child_config, args.file))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
