"""Helpers of the deployment checks: the chart, its CI values files, rendered manifests and
the external tools (helm from npm, kamailio from Debian) that ./ringwise's setup caches.

Everything runs offline: no cluster, no Docker daemon, no network. (On sys.path through the
pytest `pythonpath` setting, so test modules import it by name.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from ringwise_dev import asterisk as dev_asterisk

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "ringwise"
CI_VALUES = {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*.yaml"))
}
RELEASE = "rw"
# The services with a Deployment each; routing runs in the Asterisk pods.
DEPLOYED_SERVICES = ("gateway", "directory", "billing", "voicemail", "recording", "messaging")
NAMESPACE = "telephony"
CACHE = Path(os.environ.get("RINGWISE_CACHE", "/var/cache/ringwise"))

Manifest = dict[str, Any]
Render = Callable[[dict[str, Any]], list[Manifest]]


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path} is not a YAML mapping"
    return values


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Values files layered the way helm layers them (maps merge, the rest is replaced)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_chart(values: dict[str, Any]) -> list[Manifest]:
    """Every object the chart renders for values, as helm-python-sdk renders it."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[Manifest] = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            objects += parse_manifests(rendered[path])
    return objects


def cached_tool(env_var: str, pattern: str, what: str) -> Path:
    """A tool ./ringwise's setup put in the cache. Missing: CI fails, a developer skips."""
    explicit = os.environ.get(env_var)
    candidates = [Path(explicit)] if explicit else sorted(CACHE.glob(pattern), reverse=True)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    message = f"{what} not found (${env_var} or {CACHE}/{pattern}); `./ringwise test` installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# --------------------------------------------------------------------------- real Asterisk
@dataclass
class ContainerAsterisk:
    """Asterisk 22 started by the image's entrypoint, inside the local platform's chroot."""

    root: Path
    instance_dir: str  # as seen inside the chroot
    process: subprocess.Popen[str]

    def rx(self, command: str) -> str:
        result = subprocess.run(
            [
                "chroot",
                str(self.root),
                "asterisk",
                "-C",
                f"{self.instance_dir}/etc/asterisk.conf",
                "-rx",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout


@contextmanager
def container_asterisk(name: str, env: dict[str, str]) -> Iterator[ContainerAsterisk]:
    """Run asterisk/entrypoint.py with env (the pod's settings) in the chroot, as the image
    does, until Asterisk is fully booted; stop it and remove its folder afterwards. SIP binds
    to loopback (the machine is shared; a pod binds 0.0.0.0)."""
    root = dev_asterisk.chroot_root()
    if not (root / "usr" / "sbin" / "asterisk").exists():
        pytest.fail(f"no Asterisk chroot at {root}: ./ringwise test builds it")
    in_chroot = f"/srv/ringwise/{name}"
    host_dir = root / in_chroot.lstrip("/")
    shutil.rmtree(host_dir, ignore_errors=True)
    (host_dir / "src").mkdir(parents=True)
    shutil.copytree(REPO / "asterisk" / "etc", host_dir / "src" / "etc")
    shutil.copy(REPO / "asterisk" / "entrypoint.py", host_dir / "src" / "entrypoint.py")
    full_env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "RINGWISE_ASTERISK_TEMPLATES": f"{in_chroot}/src/etc",
        "RINGWISE_INSTANCE_DIR": f"{in_chroot}/instance",
        "RINGWISE_SIP_BIND": "127.0.0.1",
        **env,
    }
    process = subprocess.Popen(
        [
            "chroot",
            str(root),
            "env",
            "-i",
            *(f"{k}={v}" for k, v in full_env.items()),
            "python3",
            f"{in_chroot}/src/entrypoint.py",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    asterisk = ContainerAsterisk(root, f"{in_chroot}/instance", process)
    try:
        deadline = time.monotonic() + 20
        while "fully booted" not in asterisk.rx("core waitfullybooted"):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "Asterisk did not boot in 20 s"
            time.sleep(0.3)
        yield asterisk
    finally:
        if process.poll() is None:
            asterisk.rx("core stop now")
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(host_dir, ignore_errors=True)


def invite_final_code(sip_port: int, source_port: int, number: str = "+15550100") -> int:
    """Send one INVITE from 127.0.0.1 and return the final response's code (ACKing it)."""
    branch = f"z9hG4bK-ringwise-{source_port}"
    common = (
        f"Via: SIP/2.0/UDP 127.0.0.1:{source_port};branch={branch}\r\n"
        f"From: <sip:carrier@127.0.0.1:{source_port}>;tag=carrier\r\n"
        f"To: <sip:{number}@127.0.0.1:{sip_port}>\r\n"
        f"Call-ID: container-check-{source_port}\r\n"
    )
    invite = (
        f"INVITE sip:{number}@127.0.0.1:{sip_port} SIP/2.0\r\n{common}CSeq: 1 INVITE\r\n"
        f"Contact: <sip:carrier@127.0.0.1:{source_port}>\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.1", source_port))
        sock.sendto(invite.encode(), ("127.0.0.1", sip_port))
        while True:
            reply = sock.recv(65535).decode(errors="replace")
            code = int(reply.split(" ", 2)[1])
            if code >= 200:
                to = next(line for line in reply.split("\r\n") if line.startswith("To:"))
                ack = (
                    f"ACK sip:{number}@127.0.0.1:{sip_port} SIP/2.0\r\n"
                    + common.replace(f"To: <sip:{number}@127.0.0.1:{sip_port}>\r\n", to + "\r\n")
                    + "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                )
                sock.sendto(ack.encode(), ("127.0.0.1", sip_port))
                return code


# Fixtures (conftest.py re-exports them).
@pytest.fixture(scope="session")
def render() -> Render:
    return render_chart


@pytest.fixture(scope="session")
def ci_values() -> dict[str, dict[str, Any]]:
    return {name: load_values(path) for name, path in CI_VALUES.items()}


@pytest.fixture(scope="session")
def rendered(ci_values: dict[str, dict[str, Any]]) -> dict[str, list[Manifest]]:
    """The chart rendered with each CI values file (minimal, production, tls)."""
    return {name: render_chart(values) for name, values in ci_values.items()}


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return cached_tool("RINGWISE_HELM", "tools/helm-*/helm", "helm")


@pytest.fixture(scope="session")
def kamailio_root() -> Path:
    root = cached_tool("RINGWISE_KAMAILIO_ROOT", "tools/kamailio-*", "kamailio")
    if not (root / "usr" / "sbin" / "kamailio").exists():
        pytest.fail(f"{root} holds no usr/sbin/kamailio")
    return root
