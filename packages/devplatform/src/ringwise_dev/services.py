"""The Ringwise services as local processes, wired to the local infrastructure."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from ringwise_dev.ports import HOST, PortPlan
from ringwise_dev.proc import ManagedProcess

SERVICES = ("directory", "billing", "voicemail", "recording", "messaging", "routing", "gateway")


async def http_ok(url: str) -> bool:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session,
        session.get(url) as resp,
    ):
        return resp.status == 200


def service_process(
    name: str, ports: PortPlan, log_dir: Path, env: Mapping[str, str]
) -> ManagedProcess:
    port = ports.service_http(name)
    return ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", f"ringwise_{name}.main"],
        log_path=log_dir / f"{name}.log",
        env={**env, "RINGWISE_HTTP_PORT": str(port), "RINGWISE_HTTP_HOST": HOST},
        ready=lambda: http_ok(f"http://{HOST}:{port}/readyz"),
        ready_timeout_s=30,
    )
