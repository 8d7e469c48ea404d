"""The Asterisk image's entrypoint (asterisk/entrypoint.py): it renders asterisk/etc exactly
like the local platform, checks its settings, writes the NAT settings of its pod, and the
configuration it writes boots a real Asterisk 22 (the local platform's chroot)."""

from __future__ import annotations

import base64
import copy
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deploykit import REPO, Render
from ringwise_dev import asterisk as dev_asterisk
from ringwise_dev.ports import TEST_PORTS

TEMPLATES = REPO / "asterisk" / "etc"


def load_entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ringwise_asterisk_entrypoint", REPO / "asterisk" / "entrypoint.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = load_entrypoint()

POD_ENV = {
    "HOSTNAME": "rw-ringwise-asterisk-1",
    "RINGWISE_ARI_PASSWORD": "s3cret-Pa55",
    "RINGWISE_PSTN_HOST": "10.244.0.0/16,10.245.0.0/16",
}


def test_renders_every_template_exactly_like_the_local_platform() -> None:
    values = entrypoint.settings(POD_ENV)
    for template in sorted(TEMPLATES.glob("*.conf")):
        text = template.read_text()
        assert entrypoint.render_text(text, values) == dev_asterisk.render_text(text, values)
    # Asterisk's own variables are left alone by both.
    assert entrypoint.render_text("${EXTEN} ${RINGWISE_ARI_APP}", values) == "${EXTEN} ringwise"


def test_unknown_placeholder_is_an_error_in_both_renderers() -> None:
    for render in (entrypoint.render_text, dev_asterisk.render_text):
        with pytest.raises(KeyError, match="RINGWISE_NOPE"):
            render("x = ${RINGWISE_NOPE}", {})


def test_the_local_platform_gives_every_placeholder_the_templates_use() -> None:
    used = {
        m.group(1)
        for t in TEMPLATES.glob("*.conf")
        for m in dev_asterisk.PLACEHOLDER.finditer(t.read_text())
    }
    given = set(dev_asterisk.AsteriskInstance(TEST_PORTS, "placeholder-check").template_values())
    assert used <= given
    assert used <= set(entrypoint.settings(POD_ENV))


def test_container_defaults() -> None:
    values = entrypoint.settings(POD_ENV)
    assert values["RINGWISE_INSTANCE_NAME"] == "rw-ringwise-asterisk-1"
    assert values["RINGWISE_SIP_BIND"] == "0.0.0.0"
    assert values["RINGWISE_SIP_PORT"] == "5070"
    assert (values["RINGWISE_RTP_START"], values["RINGWISE_RTP_END"]) == ("10000", "10999")
    assert values["RINGWISE_INSTANCE_DIR"] == "/var/lib/ringwise-asterisk"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RINGWISE_ARI_PASSWORD": ""}, "missing required setting(s): RINGWISE_ARI_PASSWORD"),
        ({"RINGWISE_PSTN_HOST": ""}, "RINGWISE_PSTN_HOST"),
        ({"RINGWISE_ARI_PASSWORD": "abc;def"}, "RINGWISE_ARI_PASSWORD must not contain"),
        ({"RINGWISE_ARI_USER": "x\n[evil]"}, "RINGWISE_ARI_USER must not contain"),
        ({"RINGWISE_SIP_PORT": "70000"}, "RINGWISE_SIP_PORT='70000' is not a port"),
        ({"RINGWISE_ARI_PORT": "http"}, "RINGWISE_ARI_PORT='http' is not a port"),
        ({"RINGWISE_RTP_START": "10001"}, "the start must be even"),
        ({"RINGWISE_RTP_END": "9000"}, "the start must be even and below the end"),
        ({"RINGWISE_INSTANCE_NAME": "../etc"}, "is not a name"),
    ],
)
def test_bad_settings_are_refused_with_their_name(change: dict[str, str], message: str) -> None:
    with pytest.raises(entrypoint.ConfigError) as raised:
        entrypoint.settings(POD_ENV | change)
    assert message in str(raised.value)


def test_external_address_per_pod_ordinal() -> None:
    per_pod = POD_ENV | {"RINGWISE_EXTERNAL_ADDRESSES": "198.51.100.11, 198.51.100.12"}
    assert entrypoint.external_address(entrypoint.settings(per_pod)) == "198.51.100.12"
    single = POD_ENV | {"RINGWISE_EXTERNAL_ADDRESS": "198.51.100.9"}
    assert entrypoint.external_address(entrypoint.settings(single)) == "198.51.100.9"
    assert entrypoint.external_address(entrypoint.settings(POD_ENV)) is None
    too_few = POD_ENV | {
        "HOSTNAME": "rw-ringwise-asterisk-2",
        "RINGWISE_EXTERNAL_ADDRESSES": "198.51.100.11,198.51.100.12",
    }
    with pytest.raises(entrypoint.ConfigError, match="none for pod 'rw-ringwise-asterisk-2'"):
        entrypoint.external_address(entrypoint.settings(too_few))
    both = single | {"RINGWISE_EXTERNAL_ADDRESSES": "198.51.100.11"}
    with pytest.raises(entrypoint.ConfigError, match="not both"):
        entrypoint.external_address(entrypoint.settings(both))


def test_prepare_writes_the_instance_folder(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    (instance / "etc").mkdir(parents=True)
    (instance / "etc" / "stale.conf").write_text("from a previous start")
    env = POD_ENV | {
        "RINGWISE_INSTANCE_DIR": str(instance),
        "RINGWISE_EXTERNAL_ADDRESSES": "198.51.100.11,198.51.100.12",
        "RINGWISE_LOCAL_NETS": "10.0.0.0/8, 192.168.0.0/16",
    }
    conf = entrypoint.prepare(env, TEMPLATES)
    assert conf == instance / "etc" / "asterisk.conf"
    etc = instance / "etc"
    assert not (etc / "stale.conf").exists()
    assert {p.name for p in etc.iterdir()} == (
        {p.name for p in TEMPLATES.glob("*.conf")} | {"pjsip_transport_nat.conf"}
    )
    for path in etc.iterdir():
        assert "${RINGWISE_" not in path.read_text(), path.name
    assert (etc / "ari.conf").stat().st_mode & 0o777 == 0o600
    assert "password = s3cret-Pa55" in (etc / "ari.conf").read_text()
    assert "bind = 0.0.0.0:5070" in (etc / "pjsip.conf").read_text()
    assert "match = 10.244.0.0/16,10.245.0.0/16" in (etc / "pjsip.conf").read_text()
    assert (etc / "pjsip_transport_nat.conf").read_text().splitlines()[1:] == [
        "external_media_address = 198.51.100.12",
        "external_signaling_address = 198.51.100.12",
        "local_net = 10.0.0.0/8",
        "local_net = 192.168.0.0/16",
    ]
    for sub in ("log", "spool", "run", "lib", "cache"):
        assert (instance / sub).is_dir()


def test_files_added_by_the_chart_are_rendered_like_the_built_in_ones(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    # What the chart's asterisk.extraConfig mounts beside (or over) the image's templates.
    (templates / "musiconhold.conf").write_text("[default]\nmode = files\n")
    (templates / "queues.conf").write_text("[support]\n; for ${RINGWISE_INSTANCE_NAME}\n")
    instance = tmp_path / "instance"
    entrypoint.prepare(POD_ENV | {"RINGWISE_INSTANCE_DIR": str(instance)}, templates)
    assert (instance / "etc" / "musiconhold.conf").read_text() == "[default]\nmode = files\n"
    assert "; for rw-ringwise-asterisk-1" in (instance / "etc" / "queues.conf").read_text()


def test_main_reports_bad_settings_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RINGWISE_ARI_PASSWORD", raising=False)
    monkeypatch.setenv("RINGWISE_PSTN_HOST", "10.0.0.0/8")
    assert entrypoint.main([]) == 2
    assert "missing required setting(s): RINGWISE_ARI_PASSWORD" in capsys.readouterr().err


# --------------------------------------------------------------------------- real Asterisk
# Ports of this check inside the pytest platform's block, clear of its own Asterisk and phones.
SIP_PORT = TEST_PORTS.base + 70
ARI_PORT = TEST_PORTS.base + 90
RTP = (TEST_PORTS.base + 900, TEST_PORTS.base + 919)


@pytest.fixture
def chroot_instance() -> Iterator[tuple[Path, str]]:
    root = dev_asterisk.chroot_root()
    if not (root / "usr" / "sbin" / "asterisk").exists():
        pytest.fail(f"no Asterisk chroot at {root}: ./ringwise test builds it")
    name = f"container-check-{TEST_PORTS.base}"
    in_chroot = f"/srv/ringwise/{name}"
    host_dir = root / in_chroot.lstrip("/")
    shutil.rmtree(host_dir, ignore_errors=True)
    (host_dir / "src").mkdir(parents=True)
    shutil.copytree(TEMPLATES, host_dir / "src" / "etc")
    shutil.copy(REPO / "asterisk" / "entrypoint.py", host_dir / "src" / "entrypoint.py")
    yield root, in_chroot
    shutil.rmtree(host_dir, ignore_errors=True)


def rx(root: Path, in_chroot: str, command: str) -> str:
    result = subprocess.run(
        [
            "chroot",
            str(root),
            "asterisk",
            "-C",
            f"{in_chroot}/instance/etc/asterisk.conf",
            "-rx",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout


def pre_stop_commands(render: Render, minimal: dict[str, Any]) -> dict[str, list[str]]:
    """The chart's preStop hooks of the Asterisk pod, by container, for this check's ARI port."""
    values = copy.deepcopy(minimal)
    values["asterisk"]["ariPort"] = ARI_PORT
    (sts,) = [o for o in render(values) if o["kind"] == "StatefulSet"]
    return {
        c["name"]: c["lifecycle"]["preStop"]["exec"]["command"]
        for c in sts["spec"]["template"]["spec"]["containers"]
    }


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


@pytest.mark.integration
def test_entrypoint_config_boots_asterisk_with_the_pods_nat_settings(
    chroot_instance: tuple[Path, str], render: Render, ci_values: dict[str, dict[str, Any]]
) -> None:
    root, in_chroot = chroot_instance
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOSTNAME": "rw-ringwise-asterisk-1",
        "RINGWISE_ASTERISK_TEMPLATES": f"{in_chroot}/src/etc",
        "RINGWISE_INSTANCE_DIR": f"{in_chroot}/instance",
        "RINGWISE_ARI_PASSWORD": "s3cret-Pa55",
        "RINGWISE_PSTN_HOST": "10.244.0.0/16,127.0.0.1",
        # Loopback here: the machine is shared (the pod binds 0.0.0.0).
        "RINGWISE_SIP_BIND": "127.0.0.1",
        "RINGWISE_SIP_PORT": str(SIP_PORT),
        "RINGWISE_ARI_PORT": str(ARI_PORT),
        "RINGWISE_RTP_START": str(RTP[0]),
        "RINGWISE_RTP_END": str(RTP[1]),
        "RINGWISE_EXTERNAL_ADDRESSES": "198.51.100.11,198.51.100.12",
        "RINGWISE_LOCAL_NETS": "10.0.0.0/8",
    }
    env_args = [f"{k}={v}" for k, v in env.items()]
    process = subprocess.Popen(
        ["chroot", str(root), "env", "-i", *env_args, "python3", f"{in_chroot}/src/entrypoint.py"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while "fully booted" not in rx(root, in_chroot, "core waitfullybooted"):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "Asterisk did not boot in 20 s"
            time.sleep(0.3)
        transport = rx(root, in_chroot, "pjsip show transport transport-udp")
        assert f"127.0.0.1:{SIP_PORT}" in transport
        assert "external_media_address      : 198.51.100.12" in transport
        assert "external_signaling_address  : 198.51.100.12" in transport
        assert "local_net                   : 10.0.0.0/255.0.0.0" in transport
        assert "Match: 10.244.0.0/16" in rx(root, in_chroot, "pjsip show endpoint pstn")
        assert "Match: 127.0.0.1/32" in rx(root, in_chroot, "pjsip show endpoint pstn")
        token = base64.b64encode(b"ringwise:s3cret-Pa55").decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ARI_PORT}/ari/asterisk/info",
            headers={"Authorization": f"Basic {token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        assert "rw-ringwise-asterisk-1" in rx(root, in_chroot, "core show settings")
        # No routing is connected to this Asterisk: a PSTN call is refused with 503, which
        # makes the SIP edge try another pod.
        assert invite_final_code(SIP_PORT, SIP_PORT + 1) == 503

        # The pod's shutdown, with the chart's own preStop hooks: routing's waits while its
        # Asterisk is up; Asterisk's stops it gracefully and returns once it is gone.
        hooks = pre_stop_commands(render, ci_values["minimal"])
        assert hooks["routing"][0] == "python"  # the routing image's interpreter; ours here:
        hooks["routing"][0] = sys.executable
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(hooks["routing"], timeout=3, check=True)
        asterisk_hook = [
            part.replace("/var/lib/ringwise-asterisk", f"{in_chroot}/instance")
            for part in hooks["asterisk"]
        ]
        subprocess.run(["chroot", str(root), *asterisk_hook], timeout=30, check=True)
        assert process.wait(timeout=10) == 0
        subprocess.run(hooks["routing"], timeout=10, check=True)
    finally:
        if process.poll() is None:
            rx(root, in_chroot, "core stop now")
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
