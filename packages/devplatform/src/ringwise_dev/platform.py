"""The whole Ringwise platform as local processes: infrastructure, Asterisk, services.

Used by `ringwise-dev up` (base port 20000, data under .run/dev) and by the pytest harness
(base port 22000), so the demo and the tests exercise exactly the same wiring.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path
from typing import Any

import aiohttp

from ringwise_dev.asterisk import AsteriskInstance
from ringwise_dev.fixture import write_fixture
from ringwise_dev.infra import Infra
from ringwise_dev.ports import HOST, PSTN_HOST, PortPlan
from ringwise_dev.proc import ManagedProcess, ProcessFailed
from ringwise_dev.services import SERVICES, service_process
from ringwise_dev.sipp import SippWorkspace

OPERATOR_EMAIL = "operator@ringwise.test"


class LocalPlatform:
    def __init__(
        self,
        ports: PortPlan,
        data_dir: Path,
        instance_name: str,
        *,
        infra: Infra | None = None,
        log_level: str = "info",
    ) -> None:
        self.ports = ports
        self.data_dir = data_dir.resolve()
        self.infra = infra or Infra(ports, self.data_dir / "infra")
        self._own_infra = infra is None
        self.asterisk = AsteriskInstance(ports, instance_name)
        self.sipp = SippWorkspace.for_asterisk(self.asterisk)
        self.fixture_path = write_fixture(ports, self.data_dir / "directory-fixture.json")
        self.log_level = log_level
        # The recording archive's platform key-encryption key (fresh per instance).
        self.recording_platform_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.recordings_bucket = "ringwise-recordings"
        # A fresh key per platform run: tokens of an earlier run are simply invalid.
        self.token_signing_key = secrets.token_urlsafe(48)
        # The platform's first operator admin (directory creates it at start-up).
        self.operator_password = secrets.token_urlsafe(18)
        self.services: dict[str, ManagedProcess] = {
            name: service_process(name, ports, self.data_dir / "logs", self.service_env(name))
            for name in SERVICES
        }

    def service_env(self, name: str) -> dict[str, str]:
        endpoints = self.infra.endpoints
        env = {
            "RINGWISE_LOG_LEVEL": self.log_level,
            "RINGWISE_NATS_URL": endpoints.nats_url,
            "RINGWISE_REDIS_URL": endpoints.redis_url,
            "RINGWISE_MONGO_URL": endpoints.mongo_url,
        }
        if name == "voicemail":
            env |= {
                "RINGWISE_S3_ENDPOINT": endpoints.s3_endpoint,
                "RINGWISE_S3_ACCESS_KEY": endpoints.s3_access_key,
                "RINGWISE_S3_SECRET_KEY": endpoints.s3_secret_key,
                "RINGWISE_S3_REGION": endpoints.s3_region,
                "RINGWISE_SMTP_HOST": endpoints.smtp_host,
                "RINGWISE_SMTP_PORT": str(endpoints.smtp_port),
            }
        if name in ("routing", "voicemail", "recording"):
            env |= {
                "RINGWISE_ARI_URL": self.asterisk.ari_url,
                "RINGWISE_ARI_USER": self.asterisk.ari_user,
                "RINGWISE_ARI_PASSWORD": self.asterisk.ari_password,
                "RINGWISE_ARI_APP": self.asterisk.ari_app,
                # sipp phones register for an answering sipp on another port (sipp.py).
                "RINGWISE_PJSIP_REWRITE_CONTACT": "false",
            }
        if name == "routing":
            # Outbound calls go to the carrier's side of the trunk: a sipp far end on the
            # trunk's own address (SippWorkspace.start_far_end).
            env["RINGWISE_PSTN_TRUNK_ADDRESS"] = f"{PSTN_HOST}:{self.ports.pstn_far_end}"
        if name == "directory":
            env["RINGWISE_DIRECTORY_FIXTURE"] = str(self.fixture_path)
            env["RINGWISE_OPERATOR_EMAIL"] = OPERATOR_EMAIL
            env["RINGWISE_OPERATOR_PASSWORD"] = self.operator_password
        if name == "recording":
            env |= {
                "RINGWISE_S3_ENDPOINT": endpoints.s3_endpoint,
                "RINGWISE_S3_ACCESS_KEY": endpoints.s3_access_key,
                "RINGWISE_S3_SECRET_KEY": endpoints.s3_secret_key,
                "RINGWISE_S3_REGION": endpoints.s3_region,
                "RINGWISE_RECORDINGS_BUCKET": self.recordings_bucket,
                "RINGWISE_RECORDINGS_BUCKET_CREATE": "true",
                "RINGWISE_RECORDING_PLATFORM_KEY": self.recording_platform_key,
            }
        if name == "gateway":
            env["RINGWISE_TOKEN_SIGNING_KEY"] = self.token_signing_key
        return env

    def service_url(self, name: str, path: str = "") -> str:
        return f"http://{HOST}:{self.ports.service_http(name)}{path}"

    async def start(self) -> None:
        try:
            starts: list[Any] = [self.asterisk.start()]
            if self._own_infra:
                starts.append(self.infra.start())
            await asyncio.gather(*starts)
            for proc in self.services.values():
                proc.start()
            await asyncio.gather(*(p.wait_ready() for p in self.services.values()))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.services.values()), return_exceptions=True)
        await self.asterisk.stop()
        if self._own_infra:
            await self.infra.stop()

    async def restart_service(self, name: str) -> None:
        proc = self.services[name]
        await proc.stop()
        await proc.start_and_wait()

    async def get_json(self, service: str, path: str, *, status: int = 200) -> Any:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(self.service_url(service, path)) as resp,
        ):
            if resp.status != status:
                raise ProcessFailed(f"GET {service}{path} -> {resp.status}: {await resp.text()}")
            return await resp.json(content_type=None)
