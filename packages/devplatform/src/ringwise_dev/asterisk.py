"""A real Asterisk 22 for the local platform and the tests, run inside the Debian chroot.

Asterisk is not packaged for the host's Debian, so asterisk/build-chroot.sh builds a small
Debian-unstable chroot once (cached under RINGWISE_CACHE). Each AsteriskInstance gets its own
folder inside that chroot (config, logs, spool, run, db), rendered from asterisk/etc/, so the
dev platform (ports base 20000) and the tests (base 22000) can run at the same time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import aiohttp

from ringwise_dev.ports import HOST, PSTN_HOST, PortPlan
from ringwise_dev.proc import ManagedProcess, ProcessFailed

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("/var/cache/ringwise")
# Where instance folders live, as seen from inside the chroot.
INSTANCES_IN_CHROOT = PurePosixPath("/srv/ringwise")
# Only our own settings are substituted; Asterisk's ${EXTEN} etc. must stay intact.
PLACEHOLDER = re.compile(r"\$\{(RINGWISE_[A-Z0-9_]+)\}")


def repo_root() -> Path:
    """The clone's root: $RINGWISE_REPO, else the nearest parent holding asterisk/etc."""
    env = os.environ.get("RINGWISE_REPO")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "asterisk" / "build-chroot.sh").is_file():
            return parent
    raise RuntimeError("cannot find the Ringwise repo root; set RINGWISE_REPO")


def chroot_root() -> Path:
    return Path(os.environ.get("RINGWISE_CACHE", str(DEFAULT_CACHE))) / "asterisk-chroot"


def ensure_chroot() -> Path:
    """Build the Asterisk/sipp chroot if needed (idempotent, fast when cached); return its root."""
    script = repo_root() / "asterisk" / "build-chroot.sh"
    subprocess.run(["bash", str(script)], check=True)
    return chroot_root()


def render_text(text: str, values: Mapping[str, str]) -> str:
    """Replace ${RINGWISE_*} placeholders; an unknown one is an error, not an empty string."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for placeholder ${{{name}}}")
        return values[name]

    return PLACEHOLDER.sub(sub, text)


def render_config(src: Path, dst: Path, values: Mapping[str, str]) -> None:
    """Render every file of src (asterisk/etc) into dst, replacing dst's previous contents."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        if path.is_file():
            target = dst / path.name
            target.write_text(render_text(path.read_text(), values))
            # ari.conf holds the ARI password.
            target.chmod(0o600)


class AsteriskInstance:
    """One Asterisk process with its own config, ports and files inside the chroot."""

    def __init__(
        self,
        ports: PortPlan,
        instance_name: str,
        ari_user: str = "ringwise",
        ari_password: str | None = None,
        ari_app: str = "ringwise",
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", instance_name):
            raise ValueError(f"bad instance name {instance_name!r}")
        self.ports = ports
        self.instance_name = instance_name
        self.ari_app = ari_app
        self._ari_user = ari_user
        self._ari_password = ari_password or secrets.token_urlsafe(24)
        self.chroot = chroot_root()
        self.chroot_dir = INSTANCES_IN_CHROOT / instance_name
        self.host_dir = self.chroot / self.chroot_dir.relative_to("/")
        self._process: ManagedProcess | None = None

    # ------------------------------------------------------------------ properties
    @property
    def ari_url(self) -> str:
        return f"http://{HOST}:{self.ports.ari_http}"

    @property
    def ari_user(self) -> str:
        return self._ari_user

    @property
    def ari_password(self) -> str:
        return self._ari_password

    def ari_auth_headers(self) -> dict[str, str]:
        """HTTP basic auth for ARI requests and the events websocket."""
        token = base64.b64encode(f"{self._ari_user}:{self._ari_password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @property
    def log_path(self) -> Path:
        """The process's console output (Asterisk also writes log/messages there)."""
        return self.host_dir / "log" / "console.log"

    @property
    def messages_log_path(self) -> Path:
        return self.host_dir / "log" / "messages"

    @property
    def conf_in_chroot(self) -> PurePosixPath:
        return self.chroot_dir / "etc" / "asterisk.conf"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError("Asterisk instance not started")
        return self._process

    def template_values(self) -> dict[str, str]:
        return {
            "RINGWISE_INSTANCE_DIR": str(self.chroot_dir),
            "RINGWISE_INSTANCE_NAME": self.instance_name,
            "RINGWISE_ARI_PORT": str(self.ports.ari_http),
            "RINGWISE_ARI_USER": self._ari_user,
            "RINGWISE_ARI_PASSWORD": self._ari_password,
            "RINGWISE_ARI_APP": self.ari_app,
            "RINGWISE_SIP_BIND": HOST,
            "RINGWISE_SIP_PORT": str(self.ports.sip),
            "RINGWISE_PSTN_HOST": PSTN_HOST,
            "RINGWISE_RTP_START": str(self.ports.rtp_start),
            "RINGWISE_RTP_END": str(self.ports.rtp_end),
        }

    # ------------------------------------------------------------------ lifecycle
    def _prepare(self) -> None:
        # ARI recordings (voicemail, screening names) fail with ENOENT until spool/recording
        # exists: Asterisk does not create it.
        for sub in ("log", "spool", "spool/recording", "run", "lib", "cache"):
            (self.host_dir / sub).mkdir(parents=True, exist_ok=True)
        render_config(
            repo_root() / "asterisk" / "etc", self.host_dir / "etc", self.template_values()
        )

    async def _stop_leftover(self) -> None:
        """Stop an instance of ours left running by a crashed harness (same folder, same ports)."""
        if not (self.host_dir / "run" / "asterisk.ctl").exists():
            return
        with contextlib.suppress(Exception):
            out = await self.rx("core show version", timeout_s=3.0)
            if out.startswith("Asterisk"):
                log.warning("stopping a leftover Asterisk %s", self.instance_name)
                await self.rx("core stop now", timeout_s=5.0)
                await asyncio.sleep(0.5)

    async def _ready(self) -> bool:
        out = await self.rx("core waitfullybooted", timeout_s=5.0)
        if "fully booted" not in out:
            return False
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with (
            aiohttp.ClientSession(headers=self.ari_auth_headers(), timeout=timeout) as session,
            session.get(f"{self.ari_url}/ari/asterisk/info") as resp,
        ):
            return resp.status == 200

    async def start(self) -> None:
        """Render the config and start Asterisk; returns once booted and ARI answers."""
        if self._process is not None and self._process.running:
            return
        await asyncio.to_thread(ensure_chroot)
        await self._stop_leftover()
        await asyncio.to_thread(self._prepare)
        self._process = ManagedProcess(
            name=f"asterisk-{self.instance_name}",
            argv=[
                "chroot",
                str(self.chroot),
                "asterisk",
                "-f",
                "-n",
                "-C",
                str(self.conf_in_chroot),
            ],
            log_path=self.log_path,
            env={"LANG": "C.UTF-8"},
            ready=self._ready,
            ready_timeout_s=20.0,
        )
        try:
            await self._process.start_and_wait()
        except ProcessFailed:
            await self._process.stop()
            raise
        log.info("asterisk %s up: sip %s, ari %s", self.instance_name, self.ports.sip, self.ari_url)

    async def stop(self) -> None:
        if self._process is None:
            return
        # A graceful "core stop now" via the control socket is quicker than SIGTERM handling,
        # which waits for the console; fall back to signals if the socket is gone.
        if self._process.running:
            with contextlib.suppress(Exception):
                await self.rx("core stop now", timeout_s=3.0)
        await self._process.stop()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def rx(self, command: str, timeout_s: float = 10.0) -> str:
        """Run one CLI command against this instance (asterisk -rx) and return its output."""
        proc = await asyncio.create_subprocess_exec(
            "chroot",
            str(self.chroot),
            "asterisk",
            "-C",
            str(self.conf_in_chroot),
            "-rx",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command!r} failed ({proc.returncode}): {text}")
        return text
