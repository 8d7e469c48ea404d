"""The SIP edge's kamailio.cfg, as the chart renders it, passes Kamailio's own config check
(`kamailio -c`, the image's Kamailio version unpacked from Debian), and its entrypoint fills
in the pod address exactly where the config expects it."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from deploykit import (
    NAMESPACE,
    RELEASE,
    REPO,
    ContainerAsterisk,
    Manifest,
    Render,
    container_asterisk,
    invite_final_code,
)
from ringwise.directory.v1 import devices_pb2
from ringwise_dev import asterisk as dev_asterisk
from ringwise_dev.ports import TEST_PORTS
from ringwise_kit.ari.calls import RestCall
from ringwise_routing.provisioning.pjsip import PjsipOptions, apply_calls
from ringwise_voicemail.messages import mwi

ENTRYPOINT = REPO / "deploy" / "sip-edge" / "entrypoint.sh"
SCENARIOS = Path(__file__).parent / "sipp"
POD_IP = "10.244.3.7"


def edge_config(objects: list[Manifest]) -> dict[str, str]:
    (config_map,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-sip-edge")
    ]
    data: dict[str, str] = config_map["data"]
    return data


def kamailio_check(kamailio_root: Path, config_dir: Path) -> subprocess.CompletedProcess[str]:
    """`kamailio -c` on config_dir/kamailio.cfg with the unpacked package's modules."""
    libdir = kamailio_root / "usr" / "lib" / "x86_64-linux-gnu" / "kamailio"
    return subprocess.run(
        [
            str(kamailio_root / "usr" / "sbin" / "kamailio"),
            "-c",
            "-f",
            str(config_dir / "kamailio.cfg"),
            "-L",
            str(libdir / "modules"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"LD_LIBRARY_PATH": str(libdir), "PATH": os.environ.get("PATH", "")},
    )


def resolvable_here(config: str) -> str:
    """Kamailio resolves advertised names at start; the internal Service's cluster name does
    not resolve outside a cluster, so the checks use `localhost`, still a name (the edge must
    recognise it as its own in Record-Route, through its alias). The edge pods' DMQ peers
    (their headless Service, every edge pod's address) are this one edge: 127.0.0.1 (DMQ
    takes the first address of a name, and `localhost` may be ::1)."""
    config = re.sub(
        r"[a-z0-9-]+-sip-edge-peers\.[a-z0-9.-]+\.svc\.[a-z0-9.-]+", "127.0.0.1", config
    )
    return re.sub(
        r"[a-z0-9-]+-sip-edge-internal\.[a-z0-9.-]+\.svc\.[a-z0-9.-]+", "localhost", config
    )


def write_rendered(data: dict[str, str], pod_ip: str, directory: Path) -> None:
    """What the entrypoint does: the pod address into the config; the list stays as is."""
    (directory / "dispatcher.list").write_text(data["dispatcher.list"])
    config = resolvable_here(data["kamailio.cfg"]).replace("@POD_IP@", pod_ip)
    # The check runs outside the pod: the list lives beside the config here.
    config = config.replace(
        "/etc/ringwise-sip-edge/dispatcher.list", str(directory / "dispatcher.list")
    )
    (directory / "kamailio.cfg").write_text(config)


@pytest.mark.parametrize("values_name", ["minimal", "production"])
def test_rendered_kamailio_config_passes_kamailio_check(
    values_name: str, rendered: dict[str, list[Manifest]], kamailio_root: Path, tmp_path: Path
) -> None:
    data = edge_config(rendered[values_name])
    # kamailio -c binds nothing but checks that listen addresses are local: use loopback.
    write_rendered(data, "127.0.0.1", tmp_path)
    result = kamailio_check(kamailio_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config file ok" in result.stdout + result.stderr
    # The public socket advertises the edge's public address and the SIP port carriers use.
    advertised = {"minimal": "203.0.113.5:5060", "production": "198.51.100.10:5060"}
    assert f"advertise {advertised[values_name]}" in result.stdout + result.stderr


def test_one_edge_pods_config_without_dmq_passes_kamailio_check(
    render: Render, ci_values: dict[str, dict[str, Any]], kamailio_root: Path, tmp_path: Path
) -> None:
    values = copy.deepcopy(ci_values["minimal"])
    values["sipEdge"]["replicas"] = 1
    data = edge_config(render(values))
    assert 'loadmodule "registrar.so"' in data["kamailio.cfg"]
    write_rendered(data, "127.0.0.1", tmp_path)
    result = kamailio_check(kamailio_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_config_is_caught_by_the_check(
    rendered: dict[str, list[Manifest]], kamailio_root: Path, tmp_path: Path
) -> None:
    data = edge_config(rendered["minimal"])
    data = {**data, "kamailio.cfg": data["kamailio.cfg"].replace("ds_select_dst(", "ds_pick_dst(")}
    write_rendered(data, "127.0.0.1", tmp_path)
    result = kamailio_check(kamailio_root, tmp_path)
    assert result.returncode != 0
    assert "ds_pick_dst" in result.stderr


def test_entrypoint_renders_the_pod_address_and_execs_kamailio(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    data = edge_config(rendered["minimal"])
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "kamailio.cfg").write_text(data["kamailio.cfg"])
    # Names that resolve here, so the entrypoint's DNS wait passes at once.
    (config_dir / "dispatcher.list").write_text("1 sip:localhost:5070\n")
    # A stand-in `kamailio` on PATH records how it was started (exec replaces the shell).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "kamailio"
    recorder.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n')
    recorder.chmod(0o755)
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "RINGWISE_EDGE_CONFIG": str(config_dir / "kamailio.cfg"),
            "RINGWISE_EDGE_DISPATCHER_LIST": str(config_dir / "dispatcher.list"),
            "RINGWISE_EDGE_POD_IP": POD_IP,
            "RINGWISE_EDGE_DNS_WAIT_S": "5",
            "RINGWISE_EDGE_RUN_DIR": str(tmp_path / "run"),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    assert (tmp_path / "argv").read_text().split() == [
        "-DD",
        "-E",
        "-f",
        f"{run_dir}/kamailio.cfg",
        "-Y",
        str(run_dir),
    ]
    written = (run_dir / "kamailio.cfg").read_text()
    assert "@POD_IP@" not in written
    assert f"listen=udp:{POD_IP}:5080 advertise 203.0.113.5:5060" in written
    assert f"force_send_socket(udp:{POD_IP}:5090)" in written


def test_entrypoint_refuses_a_missing_or_odd_pod_address(tmp_path: Path) -> None:
    (tmp_path / "dispatcher.list").write_text("")
    (tmp_path / "kamailio.cfg").write_text("#!KAMAILIO\n")
    base = {
        "PATH": "/usr/bin:/bin",
        "RINGWISE_EDGE_CONFIG": str(tmp_path / "kamailio.cfg"),
        "RINGWISE_EDGE_DISPATCHER_LIST": str(tmp_path / "dispatcher.list"),
    }
    missing = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=base, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0
    assert "RINGWISE_EDGE_POD_IP" in missing.stderr
    odd = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={**base, "RINGWISE_EDGE_POD_IP": "1.2.3.4/g;"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert odd.returncode == 2
    assert "bad RINGWISE_EDGE_POD_IP" in odd.stderr


# --------------------------------------------------------------------------- real calls
# The edge (real Kamailio, the chart's config) between a carrier and an "Asterisk pod" (both
# sipp, in the local platform's chroot), on ports of this check's block.
EDGE_PUBLIC = TEST_PORTS.base + 80
EDGE_CLUSTER = TEST_PORTS.base + 82
DEAD_POD = TEST_PORTS.base + 84  # nothing listens: a pod that is gone
CALL_SERVER = TEST_PORTS.base + 86
CARRIER = TEST_PORTS.base + 87
CALLS = 4
EDGE_PHONES = TEST_PORTS.base + 88
POD_A = TEST_PORTS.base + 89
POD_B = TEST_PORTS.base + 90
PHONE = TEST_PORTS.base + 91
EDGE_DMQ = TEST_PORTS.base + 93
MWI_BODY = "Messages-Waiting: yes\r\n"


def options_answered(port: int, address: str = "127.0.0.1") -> bool:
    """An OPTIONS ping to the edge itself is answered 200 (load balancers' health checks)."""
    request = (
        f"OPTIONS sip:{address}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {address}:{port + 1000};branch=z9hG4bK-edge-check\r\n"
        f"From: <sip:check@{address}>;tag=1\r\nTo: <sip:{address}>\r\n"
        "Call-ID: edge-check\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.bind((address, port + 1000))
        sock.sendto(request.encode(), (address, port))
        try:
            return sock.recv(4096).startswith(b"SIP/2.0 200")
        except TimeoutError:
            return False


def sipp(root: Path, workdir: str, scenario: str, *args: str) -> list[str]:
    return [
        "chroot",
        str(root),
        "env",
        "-C",
        workdir,
        "sipp",
        "-sf",
        f"{workdir}/{scenario}",
        "-nostdin",
        "-i",
        "127.0.0.1",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        f"{workdir}/{scenario}.errors",
        *args,
    ]


def edge_config_for_here(
    render: Render,
    minimal: dict[str, Any],
    directory: Path,
    dispatcher_list: str,
    ping_interval_s: int,
    advertised_port: int = EDGE_PUBLIC,
) -> Path:
    """The chart's kamailio.cfg for an edge on this machine's loopback ports. The public
    socket advertises advertised_port (in a pod: the load balancer's 5060, not 5080)."""
    values = copy.deepcopy(minimal)
    values["sipEdge"] = {
        "advertisedAddress": "127.0.0.1",
        "failoverTimeoutSeconds": 1,
        "service": {"port": advertised_port},
    }
    data = edge_config(render(values))
    config = (
        resolvable_here(data["kamailio.cfg"])
        .replace("@POD_IP@", "127.0.0.1")
        .replace(":5080", f":{EDGE_PUBLIC}")
        .replace(":5090", f":{EDGE_CLUSTER}")
        .replace(":5091", f":{EDGE_PHONES}")
        .replace(":5092", f":{EDGE_DMQ}")
        .replace("/etc/ringwise-sip-edge/dispatcher.list", str(directory / "dispatcher.list"))
    )
    config, probes = re.subn(
        r'"ds_ping_interval", \d+', f'"ds_ping_interval", {ping_interval_s}', config
    )
    assert probes == 1
    (directory / "dispatcher.list").write_text(dispatcher_list)
    (directory / "kamailio.cfg").write_text(config)
    return directory / "kamailio.cfg"


@contextmanager
def running_edge(
    kamailio_root: Path,
    config: Path,
    address: str = "127.0.0.1",
    resolv_conf: Path | None = None,
) -> Iterator[Path]:
    """Kamailio on config (listening on address) until the block ends; yields the path of
    its log. With resolv_conf, Kamailio runs in a mount namespace of its own where that file
    is /etc/resolv.conf (its DNS server), as a pod has the cluster's."""
    libdir = kamailio_root / "usr" / "lib" / "x86_64-linux-gnu" / "kamailio"
    run_dir = config.parent / "run"
    run_dir.mkdir()
    log_path = config.parent / "kamailio.log"
    command = [
        str(kamailio_root / "usr" / "sbin" / "kamailio"),
        "-DD",
        "-E",
        "-f",
        str(config),
        "-L",
        str(libdir / "modules"),
        "-Y",
        str(run_dir),
    ]
    if resolv_conf is not None:
        # unshare and sh exec in turn: the process stopped below is Kamailio itself.
        command = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv_conf),
            *command,
        ]
    with log_path.open("w") as log:
        edge = subprocess.Popen(
            command,
            env={"LD_LIBRARY_PATH": str(libdir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 15
            while not options_answered(EDGE_PUBLIC, address):
                assert edge.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the edge did not answer OPTIONS in 15 s"
            yield log_path
        finally:
            edge.terminate()
            try:
                edge.wait(timeout=10)
            except subprocess.TimeoutExpired:
                edge.kill()
                edge.wait()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("caller_scenario", "server_scenario"),
    [
        # The carrier hangs up: its ACK and BYE follow the edge's public Record-Route.
        ("edge_caller.xml", "edge_call_server.xml"),
        # The pod hangs up: its BYE follows the edge's internal Record-Route (the internal
        # Service's name, which Kamailio must take as its own).
        ("edge_caller_far_end_bye.xml", "edge_call_server_hangs_up.xml"),
    ],
)
def test_calls_cross_the_edge_and_fail_over_past_a_dead_pod(
    caller_scenario: str,
    server_scenario: str,
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    root = dev_asterisk.chroot_root()
    if not (root / "usr" / "bin" / "sipp").exists():
        pytest.fail(f"no sipp in the chroot {root}: ./ringwise test builds it")
    # Round robin over a dead pod and a live one: every other call meets the dead one first.
    # No OPTIONS probes here: sipp's call server would take them for calls.
    config = edge_config_for_here(
        render,
        ci_values["minimal"],
        tmp_path,
        f"1 sip:127.0.0.1:{DEAD_POD}\n1 sip:127.0.0.1:{CALL_SERVER}\n",
        ping_interval_s=3600,
    )
    workdir = f"/srv/ringwise/edge-check-{TEST_PORTS.base}"
    host_workdir = root / workdir.lstrip("/")
    shutil.rmtree(host_workdir, ignore_errors=True)
    host_workdir.mkdir(parents=True)
    for scenario in SCENARIOS.glob("*.xml"):
        shutil.copy(scenario, host_workdir / scenario.name)
    server: subprocess.Popen[str] | None = None
    try:
        with running_edge(kamailio_root, config) as edge_log:
            server = subprocess.Popen(
                sipp(root, workdir, server_scenario, "-p", str(CALL_SERVER), "-m", str(CALLS)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)
            carrier = subprocess.run(
                sipp(
                    root,
                    workdir,
                    caller_scenario,
                    "-p",
                    str(CARRIER),
                    "-s",
                    "15550100",
                    "-m",
                    str(CALLS),
                    "-l",
                    "1",
                    "-r",
                    "2",
                    f"127.0.0.1:{EDGE_PUBLIC}",
                ),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            errors = host_workdir / f"{caller_scenario}.errors"
            assert carrier.returncode == 0, (
                errors.read_text() if errors.exists() else carrier.stderr
            ) + edge_log.read_text()[-3000:]
            # Every call, its ACK and its BYE went through the edge to the live pod.
            assert server.wait(timeout=15) == 0, server.stderr.read() if server.stderr else ""
            # The dead pod was tried, timed out, and was marked down; the live one took over.
            failover = f"asterisk pod sip:127.0.0.1:{DEAD_POD} failed (408): marked down"
            assert failover in edge_log.read_text()
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(host_workdir, ignore_errors=True)


ASTERISK_SIP = TEST_PORTS.base + 72
ASTERISK_ARI = TEST_PORTS.base + 92
ASTERISK_RTP = (TEST_PORTS.base + 920, TEST_PORTS.base + 939)


@pytest.mark.integration
def test_the_edge_probes_a_real_asterisk_and_fails_over_when_it_refuses(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    """An Asterisk pod (the image's entrypoint and config) without its routing sidecar refuses
    a call with 503: the edge logs the failover, marks the pod down and tells the carrier no
    call server is available. The pod answers the edge's OPTIONS probes, so it is back in
    rotation a few seconds later and takes the next call."""
    env = {
        "HOSTNAME": "rw-ringwise-asterisk-0",
        "RINGWISE_ARI_PASSWORD": "edge-check",
        # The edge sends from loopback here (the pod network in a cluster).
        "RINGWISE_PSTN_HOST": "127.0.0.1",
        "RINGWISE_SIP_PORT": str(ASTERISK_SIP),
        "RINGWISE_ARI_PORT": str(ASTERISK_ARI),
        "RINGWISE_RTP_START": str(ASTERISK_RTP[0]),
        "RINGWISE_RTP_END": str(ASTERISK_RTP[1]),
    }
    # As in a pod, the public socket advertises another port than it listens on: replies to
    # what the edge sends Asterisk must still find it.
    config = edge_config_for_here(
        render,
        ci_values["minimal"],
        tmp_path,
        f"1 sip:127.0.0.1:{ASTERISK_SIP}\n",
        ping_interval_s=1,
        advertised_port=EDGE_PUBLIC + 5,
    )
    with (
        container_asterisk(f"edge-pod-check-{TEST_PORTS.base}", env),
        running_edge(kamailio_root, config) as edge_log,
    ):
        failed = f"asterisk pod sip:127.0.0.1:{ASTERISK_SIP} failed (503): marked down"
        assert invite_final_code(EDGE_PUBLIC, CARRIER) == 503
        assert edge_log.read_text().count(failed) == 1
        # Marked down, the pod gets no call until a probe is answered (every second here).
        assert invite_final_code(EDGE_PUBLIC, CARRIER + 1000) == 503
        assert edge_log.read_text().count(failed) == 1
        time.sleep(3)
        assert invite_final_code(EDGE_PUBLIC, CARRIER + 1001) == 503
        assert edge_log.read_text().count(failed) == 2


# --------------------------------------------------------------------------- phones
# Registering phones through the edge (real Kamailio, the chart's config) in front of two
# "Asterisk pods" and a phone played by UDP sockets here: what each side receives is checked
# header by header.


def test_the_config_routes_phones_with_hashing_path_and_nat_handling(
    rendered: dict[str, list[Manifest]],
) -> None:
    config = edge_config(rendered["minimal"])["kamailio.cfg"]
    assert "$avp(rw_phone) = $tU;" in config  # a REGISTER hashes on its AoR's user
    assert "$avp(rw_phone) = $fU;" in config  # other phone requests on the From user
    assert 'modparam("dispatcher", "hash_pvar", "$avp(rw_phone)")' in config
    assert 'ds_select_dst("1", "7")' in config
    assert "add_path_received();" in config
    assert 'modparam("path", "use_received", 1)' in config
    assert "fix_nated_contact();" in config
    # Only INVITEs from carriers go out of the trunk socket; REGISTER is never refused.
    assert 'is_in_subnet("$si", "0.0.0.0/0")' in config
    assert "REGISTER|SUBSCRIBE|INVITE|OPTIONS" in config


def test_asterisk_trusts_only_the_edges_trunk_port(rendered: dict[str, list[Manifest]]) -> None:
    (statefulset,) = [o for o in rendered["production"] if o["kind"] == "StatefulSet"]
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    (asterisk,) = [c for c in containers if c["name"] == "asterisk"]
    env = {e["name"]: e.get("value") for e in asterisk["env"]}
    assert env["RINGWISE_PSTN_HOST"] == "10.42.0.0:5090/16"
    (routing,) = [c for c in containers if c["name"] == "routing"]
    assert {"name": "RINGWISE_PJSIP_REWRITE_CONTACT", "value": "false"} in routing["env"]


def sip_headers(message: str) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


def reply_to(request: str, code: str, extra: str = "") -> bytes:
    """A UAS's reply: Vias, From, To (with a tag), Call-ID and CSeq copied."""
    lines = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    copied = [
        line + (";tag=uas" if line.lower().startswith("to:") and "tag=" not in line else "")
        for line in lines
        if line.split(":", 1)[0].strip().lower() in {"via", "from", "to", "call-id", "cseq"}
    ]
    return (
        f"SIP/2.0 {code}\r\n" + "\r\n".join(copied) + f"\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def next_request(sock: socket.socket, timeout_s: float = 5) -> tuple[str, tuple[str, int]] | None:
    """The next request on sock (OPTIONS probes are answered and skipped), or None."""
    sock.settimeout(timeout_s)
    while True:
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            return None
        message = data.decode()
        if message.startswith("OPTIONS "):
            sock.sendto(reply_to(message, "200 OK"), source)
            continue
        return message, source


def next_message(sock: socket.socket) -> str:
    """The next request or reply on sock, as next_request sees them."""
    received = next_request(sock)
    assert received is not None, "nothing arrived in 5 s"
    return received[0]


def register(phone: socket.socket, user: str, cseq: int) -> bytes:
    return (
        f"REGISTER sip:127.0.0.1:{EDGE_PUBLIC} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{PHONE};rport;branch=z9hG4bK-reg-{user}-{cseq}\r\n"
        f"From: <sip:{user}@127.0.0.1:{EDGE_PUBLIC}>;tag=phone-{user}\r\n"
        f"To: <sip:{user}@127.0.0.1:{EDGE_PUBLIC}>\r\n"
        f"Call-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\n"
        # The phone sits behind NAT: its Contact names its private address.
        f"Contact: <sip:{user}@192.168.1.20:5060>\r\nExpires: 120\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def register_through_edge(
    phone: socket.socket, pods: dict[int, socket.socket], user: str, cseq: int
) -> tuple[int, str]:
    """REGISTER user; the pod that gets it accepts it. Returns (that pod's port, the REGISTER
    it received) once the phone has the 200."""
    phone.sendto(register(phone, user, cseq), ("127.0.0.1", EDGE_PUBLIC))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for port, pod in pods.items():
            received = next_request(pod, timeout_s=0.2)
            if received is None:
                continue
            request, source = received
            assert request.startswith("REGISTER "), request
            # Phones' traffic comes from the edge's phone socket, not the trusted trunk one.
            assert source == ("127.0.0.1", EDGE_PHONES)
            pod.sendto(
                reply_to(
                    request, "200 OK", f"Contact: <sip:{user}@192.168.1.20:5060>;expires=120\r\n"
                ),
                source,
            )
            phone.settimeout(5)
            answer = phone.recv(65535).decode()
            assert answer.startswith("SIP/2.0 200"), answer
            return port, request
    raise AssertionError(f"no pod got the REGISTER of {user}")


@pytest.mark.integration
def test_phones_register_through_the_edge_and_are_reached_along_its_path(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    config = edge_config_for_here(
        render,
        ci_values["minimal"],
        tmp_path,
        f"1 sip:127.0.0.1:{DEAD_POD}\n1 sip:127.0.0.1:{POD_A}\n1 sip:127.0.0.1:{POD_B}\n",
        ping_interval_s=3600,
    )
    users = [f"rw{n:04x}" for n in range(8)]
    with (
        udp_socket(POD_A) as pod_a,
        udp_socket(POD_B) as pod_b,
        udp_socket(PHONE) as phone,
        running_edge(kamailio_root, config) as edge_log,
    ):
        pods = {POD_A: pod_a, POD_B: pod_b}
        first: dict[str, int] = {}
        for user in users:
            port, request = register_through_edge(phone, pods, user, 1)
            first[user] = port
            headers = sip_headers(request)
            # Path (RFC 3327): the edge's phone socket, with the phone's real source address.
            (path,) = headers["path"]
            assert path.startswith(f"<sip:localhost:{EDGE_PHONES};lr;received=")
            assert f"127.0.0.1:{PHONE}" in path.replace("%3a", ":").replace("%3A", ":")
            assert headers["contact"] == [f"<sip:{user}@192.168.1.20:5060>"]
        # Hashing on the user name spreads phones over the live pods...
        assert set(first.values()) == {POD_A, POD_B}
        # ...some hashed to the dead pod first: tried, timed out, marked down, next live one.
        assert f"asterisk pod sip:127.0.0.1:{DEAD_POD} failed (408): marked down" in (
            edge_log.read_text()
        )
        # A phone's re-REGISTER lands on the same pod (its registration is there).
        for user in users:
            port, _ = register_through_edge(phone, pods, user, 2)
            assert port == first[user], user

        # The pod holding the registration sends an MWI NOTIFY along the Path: the edge takes
        # it to the address the REGISTER came from (not the private Contact).
        user = users[0]
        holder = pods[first[user]]
        port, request = register_through_edge(phone, pods, user, 3)
        assert port == first[user]
        route = sip_headers(request)["path"][0]
        notify = (
            f"NOTIFY sip:{user}@192.168.1.20:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{first[user]};branch=z9hG4bK-mwi-1\r\n"
            f"Route: {route}\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag=mwi\r\nTo: <sip:{user}@127.0.0.1>\r\n"
            "Call-ID: mwi-1\r\nCSeq: 1 NOTIFY\r\nEvent: message-summary\r\n"
            "Subscription-State: active\r\nContent-Type: application/simple-message-summary\r\n"
            f"Max-Forwards: 70\r\nContent-Length: {len(MWI_BODY)}\r\n\r\n{MWI_BODY}"
        )
        holder.sendto(notify.encode(), ("127.0.0.1", EDGE_PHONES))
        received = next_request(phone)
        assert received is not None, edge_log.read_text()[-3000:]
        at_phone, _ = received
        assert at_phone.startswith(f"NOTIFY sip:{user}@192.168.1.20:5060 ")
        assert at_phone.endswith(MWI_BODY)
        phone.sendto(reply_to(at_phone, "200 OK"), ("127.0.0.1", EDGE_PUBLIC))
        assert next_message(holder).startswith("SIP/2.0 200")

        # A request from the cluster side that does not follow an edge Path is refused (the
        # edge is no open relay for whatever reaches its internal Service).
        stray = notify.replace(f"Route: {route}\r\n", "").replace("mwi-1", "mwi-2")
        holder.sendto(stray.encode(), ("127.0.0.1", EDGE_PHONES))
        assert next_message(holder).startswith("SIP/2.0 403")
        foreign = notify.replace(
            f"Route: {route}", f"Route: <sip:198.51.100.9:5060;lr;received=sip:127.0.0.1:{PHONE}>"
        ).replace("mwi-1", "mwi-3")
        holder.sendto(foreign.encode(), ("127.0.0.1", EDGE_PHONES))
        assert next_message(holder).startswith("SIP/2.0 403")

        # A phone's own call goes to its pod from the phone socket, record-routed.
        invite = (
            f"INVITE sip:+15550100@127.0.0.1:{EDGE_PUBLIC} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{PHONE};rport;branch=z9hG4bK-call-1\r\n"
            f"From: <sip:{user}@127.0.0.1:{EDGE_PUBLIC}>;tag=call\r\n"
            f"To: <sip:+15550100@127.0.0.1:{EDGE_PUBLIC}>\r\n"
            "Call-ID: call-1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{user}@192.168.1.20:5060>\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        phone.sendto(invite.encode(), ("127.0.0.1", EDGE_PUBLIC))
        received = next_request(holder)
        assert received is not None, edge_log.read_text()[-3000:]
        at_pod, source = received
        assert at_pod.startswith("INVITE ") and source == ("127.0.0.1", EDGE_PHONES)
        call_headers = sip_headers(at_pod)
        assert any(f"localhost:{EDGE_PHONES}" in rr for rr in call_headers["record-route"])
        # Behind NAT: the Contact now names where the INVITE came from.
        assert call_headers["contact"] == [f"<sip:{user}@127.0.0.1:{PHONE}>"]
        holder.sendto(reply_to(at_pod, "486 Busy Here"), source)


def ari_run(port: int, call: RestCall) -> None:
    """One ARI REST call (routing's provisioning, as data) against a container Asterisk."""
    token = base64.b64encode(b"ringwise:edge-check").decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ari{call.path}",
        method=call.method,
        data=json.dumps(call.body).encode() if call.body is not None else None,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def digest_authorization(challenge: str, user: str, ha1: str, uri: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha2 = md5(f"REGISTER:{uri}")
    fields = f'username="{user}",realm="{realm}",nonce="{nonce}",uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        response = md5(f"{ha1}:{nonce}:00000001:phonecnonce:auth:{ha2}")
        fields += f',qop=auth,nc=00000001,cnonce="phonecnonce",response="{response}"'
    else:
        fields += f',response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
    return f"Authorization: Digest {fields},algorithm=MD5\r\n"


def register_with_digest(phone: socket.socket, user: str, ha1: str) -> str:
    """The phone's REGISTER through the edge, challenged by the Asterisk behind it and sent
    again with its credentials; returns the answer to that second REGISTER."""
    uri = f"sip:127.0.0.1:{EDGE_PUBLIC}"
    phone.sendto(register(phone, user, 1), ("127.0.0.1", EDGE_PUBLIC))
    phone.settimeout(5)
    challenge = phone.recv(65535).decode()
    assert challenge.startswith("SIP/2.0 401"), challenge
    (www_authenticate,) = sip_headers(challenge)["www-authenticate"]
    authorized = (
        register(phone, user, 2)
        .decode()
        .replace(
            "Expires: 120\r\n",
            "Expires: 120\r\n" + digest_authorization(www_authenticate, user, ha1, uri),
        )
    )
    phone.sendto(authorized.encode(), ("127.0.0.1", EDGE_PUBLIC))
    return phone.recv(65535).decode()


@pytest.mark.integration
def test_a_phone_registers_through_the_edge_with_a_real_asterisk_and_is_called_back(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    """An Asterisk pod (the image's entrypoint and config; its phone provisioned over ARI as
    routing does, behind the edge) challenges the phone's REGISTER through the edge, stores
    the contact as the phone wrote it with the edge's Path, and a call it places to the
    phone goes through the edge to the phone's source address."""
    user, password = "rw00e1", "phone-secret"
    ha1 = md5(f"{user}:asterisk:{password}")
    env = {
        "HOSTNAME": "rw-ringwise-asterisk-0",
        "RINGWISE_ARI_PASSWORD": "edge-check",
        # The trunk is the edge's trunk socket only (as the chart renders it).
        "RINGWISE_PSTN_HOST": f"127.0.0.1:{EDGE_CLUSTER}/32",
        "RINGWISE_SIP_PORT": str(ASTERISK_SIP),
        "RINGWISE_ARI_PORT": str(ASTERISK_ARI),
        "RINGWISE_RTP_START": str(ASTERISK_RTP[0]),
        "RINGWISE_RTP_END": str(ASTERISK_RTP[1]),
    }
    config = edge_config_for_here(
        render, ci_values["minimal"], tmp_path, f"1 sip:127.0.0.1:{ASTERISK_SIP}\n", 3600
    )
    # Asterisk resolves "localhost" to ::1 first (its transport is IPv4): an address here.
    config.write_text(
        config.read_text().replace(f"localhost:{EDGE_PHONES}", f"127.0.0.1:{EDGE_PHONES}")
    )
    device = devices_pb2.SipDevice(
        tenant_id="acme", device_id="d1", sip_username=user, md5_cred=ha1, realm="asterisk"
    )
    with (
        container_asterisk(f"edge-phone-check-{TEST_PORTS.base}", env) as asterisk,
        udp_socket(PHONE) as phone,
        running_edge(kamailio_root, config) as edge_log,
    ):
        # As the chart's routing sidecar provisions it (RINGWISE_PJSIP_REWRITE_CONTACT=false).
        for call in apply_calls(device, PjsipOptions(rewrite_contact=False)):
            ari_run(ASTERISK_ARI, call)
        answer = register_with_digest(phone, user, ha1)
        assert answer.startswith("SIP/2.0 200"), answer + edge_log.read_text()[-2000:]
        # The contact as the phone wrote it, with the edge's Path to its source address.
        aor = asterisk.rx(f"pjsip show aor {user}")
        (contact_id,) = re.findall(rf"Contact:\s+({user}/sip:\S+)", aor)
        contact = asterisk.rx(f"pjsip show contact {contact_id}")
        assert re.search(rf"uri\s+:\s+sip:{user}@192\.168\.1\.20:5060\n", contact), contact
        path = f"<sip:127.0.0.1:{EDGE_PHONES};lr;received=sip:127.0.0.1:{PHONE}>"
        assert re.search(rf"path\s+:\s+{re.escape(path)}\n", contact), contact

        # A call from Asterisk to the phone: along the Path, to where the REGISTER came from.
        ari_run(
            ASTERISK_ARI,
            RestCall(
                "POST",
                f"/channels?endpoint=PJSIP/{user}&context=from-phones&extension=s&timeout=10",
            ),
        )
        received = next_request(phone, timeout_s=10)
        assert received is not None, edge_log.read_text()[-3000:]
        invite, source = received
        assert invite.startswith(f"INVITE sip:{user}@192.168.1.20:5060 "), invite
        assert source == ("127.0.0.1", EDGE_PUBLIC)
        phone.sendto(reply_to(invite, "486 Busy Here"), source)


# --------------------------------------------------------------------------- location service
# The edge keeps the bindings the pods accepted, so a pod that does not hold a phone's
# registration reaches it at sip:<user>@<edge>:5091 (what routing and voicemail send with
# RINGWISE_PHONES_VIA_EDGE).


def to_phone_via_edge(method: str, user: str, n: int, host: str = "localhost") -> bytes:
    """A request from another pod (POD_B) for user at the edge's phone socket, no Route."""
    body = MWI_BODY if method == "NOTIFY" else ""
    extra = (
        "Event: message-summary\r\nSubscription-State: active\r\n"
        "Content-Type: application/simple-message-summary\r\n"
        if method == "NOTIFY"
        else f"Contact: <sip:pod-b@127.0.0.1:{POD_B}>\r\n"
    )
    return (
        f"{method} sip:{user}@{host}:{EDGE_PHONES} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{POD_B};branch=z9hG4bK-loc-{n}\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag=pod-b\r\nTo: <sip:{user}@{host}>\r\n"
        f"Call-ID: loc-{n}\r\nCSeq: 1 {method}\r\n{extra}"
        f"Max-Forwards: 70\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def register_answered(
    phone: socket.socket, pod: socket.socket, user: str, cseq: int, code: str, expires: int = 120
) -> str:
    """The phone's REGISTER (Expires: expires) through the edge, answered `code` by the pod
    (a 200 lists the contact the pod holds, none after a de-registration); returns what the
    phone got."""
    request = register(phone, user, cseq).decode().replace("Expires: 120", f"Expires: {expires}")
    phone.sendto(request.encode(), ("127.0.0.1", EDGE_PUBLIC))
    received = next_request(pod)
    assert received is not None, "the pod got no REGISTER"
    at_pod, source = received
    extra = ""
    if code.startswith("401"):
        extra = 'WWW-Authenticate: Digest realm="asterisk",nonce="n1",algorithm=MD5\r\n'
    elif code.startswith("200") and expires:
        extra = f"Contact: <sip:{user}@192.168.1.20:5060>;expires={expires}\r\n"
    pod.sendto(reply_to(at_pod, code, extra), source)
    phone.settimeout(5)
    return phone.recv(65535).decode()


def final_reply(sock: socket.socket) -> str:
    """The next final reply on sock, past any provisional (1xx) ones."""
    while (message := next_message(sock)).startswith("SIP/2.0 1"):
        pass
    return message


@pytest.mark.integration
def test_any_pod_reaches_a_phone_through_the_edges_location_table(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    config = edge_config_for_here(
        render, ci_values["minimal"], tmp_path, f"1 sip:127.0.0.1:{POD_A}\n", ping_interval_s=3600
    )
    user = "rw0b01"
    with (
        udp_socket(POD_A) as pod_a,
        udp_socket(POD_B) as pod_b,
        udp_socket(PHONE) as phone,
        running_edge(kamailio_root, config) as edge_log,
    ):
        # Not registered: refused, nothing reaches the phone.
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 1), ("127.0.0.1", EDGE_PHONES))
        assert next_message(pod_b).startswith("SIP/2.0 404")
        # A challenged REGISTER (the pod's 401) leaves no binding behind.
        assert register_answered(phone, pod_a, user, 1, "401 Unauthorized").startswith(
            "SIP/2.0 401"
        )
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 2), ("127.0.0.1", EDGE_PHONES))
        assert next_message(pod_b).startswith("SIP/2.0 404")
        assert next_request(phone, timeout_s=0.5) is None

        # Accepted by pod A: pod B's NOTIFY goes to the address the REGISTER came from (not the
        # private Contact), from the edge's public socket, record-routed.
        assert register_answered(phone, pod_a, user, 2, "200 OK").startswith("SIP/2.0 200")
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 3), ("127.0.0.1", EDGE_PHONES))
        received = next_request(phone)
        assert received is not None, edge_log.read_text()[-3000:]
        at_phone, source = received
        assert at_phone.startswith(f"NOTIFY sip:{user}@192.168.1.20:5060 "), at_phone
        assert at_phone.endswith(MWI_BODY)
        assert source == ("127.0.0.1", EDGE_PUBLIC)
        assert any(f"localhost:{EDGE_PHONES}" in rr for rr in sip_headers(at_phone)["record-route"])
        phone.sendto(reply_to(at_phone, "200 OK"), source)
        assert next_message(pod_b).startswith("SIP/2.0 200")

        # A call from pod B the same way (what routing dials: PJSIP/<user>/sip:<user>@edge).
        pod_b.sendto(to_phone_via_edge("INVITE", user, 4), ("127.0.0.1", EDGE_PHONES))
        received = next_request(phone)
        assert received is not None, edge_log.read_text()[-3000:]
        invite, source = received
        assert invite.startswith(f"INVITE sip:{user}@192.168.1.20:5060 "), invite
        phone.sendto(reply_to(invite, "486 Busy Here"), source)
        busy = final_reply(pod_b)
        assert busy.startswith("SIP/2.0 486")
        # Pod B acknowledges the 486 (same branch, the answer's To tag), as a UAC does.
        ack = (
            f"ACK sip:{user}@localhost:{EDGE_PHONES} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{POD_B};branch=z9hG4bK-loc-4\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag=pod-b\r\nTo: {sip_headers(busy)['to'][0]}\r\n"
            "Call-ID: loc-4\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        pod_b.sendto(ack.encode(), ("127.0.0.1", EDGE_PHONES))
        # The edge acknowledges the phone's final answer itself (hop by hop).
        assert next_message(phone).startswith(f"ACK sip:{user}@192.168.1.20:5060 ")

        # Only the edge's own users: a request for another domain is no relay (403), an
        # unknown user of the edge is not found.
        pod_b.sendto(
            to_phone_via_edge("NOTIFY", user, 5, host="198.51.100.9"), ("127.0.0.1", EDGE_PHONES)
        )
        assert next_message(pod_b).startswith("SIP/2.0 403")
        pod_b.sendto(to_phone_via_edge("NOTIFY", "rw0b99", 6), ("127.0.0.1", EDGE_PHONES))
        assert next_message(pod_b).startswith("SIP/2.0 404")
        # Nor can anyone outside the cluster's networks (here: loopback is not one) write into
        # the table through the edge pods' DMQ socket.
        kdmq = (
            f"KDMQ sip:usrloc@127.0.0.1:{EDGE_DMQ} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{POD_B};branch=z9hG4bK-kdmq-1\r\n"
            f"From: <sip:usrloc@127.0.0.1:{POD_B}>;tag=rogue\r\n"
            f"To: <sip:usrloc@127.0.0.1:{EDGE_DMQ}>\r\n"
            "Call-ID: kdmq-1\r\nCSeq: 1 KDMQ\r\nMax-Forwards: 1\r\nContent-Length: 0\r\n\r\n"
        )
        pod_b.sendto(kdmq.encode(), ("127.0.0.1", EDGE_DMQ))
        assert next_message(pod_b).startswith("SIP/2.0 403")

        # De-registered (Expires: 0, the pod's 200 lists no contact): gone from the table.
        assert register_answered(phone, pod_a, user, 3, "200 OK", expires=0).startswith(
            "SIP/2.0 200"
        )
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 7), ("127.0.0.1", EDGE_PHONES))
        assert next_message(pod_b).startswith("SIP/2.0 404")
        assert next_request(phone, timeout_s=0.5) is None

        # A binding lives as long as the pod granted (here 2 s), not longer.
        assert register_answered(phone, pod_a, user, 4, "200 OK", expires=2).startswith(
            "SIP/2.0 200"
        )
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 8), ("127.0.0.1", EDGE_PHONES))
        received = next_request(phone)
        assert received is not None, edge_log.read_text()[-3000:]
        phone.sendto(reply_to(received[0], "200 OK"), received[1])
        assert next_message(pod_b).startswith("SIP/2.0 200")
        time.sleep(3)
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 9), ("127.0.0.1", EDGE_PHONES))
        assert next_message(pod_b).startswith("SIP/2.0 404")


ASTERISK_B_SIP = TEST_PORTS.base + 74
ASTERISK_B_ARI = TEST_PORTS.base + 94
ASTERISK_B_RTP = (TEST_PORTS.base + 940, TEST_PORTS.base + 959)


def pod_env(name: str, sip: int, ari: int, rtp: tuple[int, int]) -> dict[str, str]:
    """An Asterisk pod's settings as the chart renders them (trunk: the edge's trunk socket)."""
    return {
        "HOSTNAME": name,
        "RINGWISE_ARI_PASSWORD": "edge-check",
        "RINGWISE_PSTN_HOST": f"127.0.0.1:{EDGE_CLUSTER}/32",
        "RINGWISE_SIP_PORT": str(sip),
        "RINGWISE_ARI_PORT": str(ari),
        "RINGWISE_RTP_START": str(rtp[0]),
        "RINGWISE_RTP_END": str(rtp[1]),
    }


def registered_here(asterisk: ContainerAsterisk, user: str) -> bool:
    return bool(re.search(rf"Contact:\s+{user}/sip:", asterisk.rx(f"pjsip show aor {user}")))


@pytest.mark.integration
def test_a_real_asterisk_without_the_registration_reaches_the_phone_through_the_edge(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    """Two Asterisk pods (the image's entrypoint and config, the phone provisioned on both
    over ARI as routing does) behind the edge. The phone registers with the pod its name
    hashes to; the other pod, which has no contact for it, calls it with the dial string
    routing uses (PJSIP/<user>/sip:<user>@edge) and sends it an MWI NOTIFY with the variables
    voicemail gives the ringwise-mwi dialplan: both arrive at the phone's source address."""
    user, password = "rw00e2", "phone-secret"
    ha1 = md5(f"{user}:asterisk:{password}")
    edge_phones = f"127.0.0.1:{EDGE_PHONES}"
    config = edge_config_for_here(
        render,
        ci_values["minimal"],
        tmp_path,
        f"1 sip:127.0.0.1:{ASTERISK_SIP}\n1 sip:127.0.0.1:{ASTERISK_B_SIP}\n",
        3600,
    )
    # Asterisk resolves "localhost" to ::1 first (its transport is IPv4): an address here.
    config.write_text(config.read_text().replace(f"localhost:{EDGE_PHONES}", edge_phones))
    device = devices_pb2.SipDevice(
        tenant_id="acme", device_id="d2", sip_username=user, md5_cred=ha1, realm="asterisk"
    )
    with (
        container_asterisk(
            f"edge-pod-a-{TEST_PORTS.base}",
            pod_env("rw-ringwise-asterisk-0", ASTERISK_SIP, ASTERISK_ARI, ASTERISK_RTP),
        ) as pod_a,
        container_asterisk(
            f"edge-pod-b-{TEST_PORTS.base}",
            pod_env("rw-ringwise-asterisk-1", ASTERISK_B_SIP, ASTERISK_B_ARI, ASTERISK_B_RTP),
        ) as pod_b,
        udp_socket(PHONE) as phone,
        running_edge(kamailio_root, config) as edge_log,
    ):
        ari_ports = {ASTERISK_ARI: pod_a, ASTERISK_B_ARI: pod_b}
        for port in ari_ports:
            for call in apply_calls(device, PjsipOptions(rewrite_contact=False)):
                ari_run(port, call)
        answer = register_with_digest(phone, user, ha1)
        assert answer.startswith("SIP/2.0 200"), answer + edge_log.read_text()[-2000:]
        # Exactly one pod holds the registration; the other is the one that must reach it.
        (holder,) = [port for port, pod in ari_ports.items() if registered_here(pod, user)]
        (other,) = [port for port in ari_ports if port != holder]
        assert not registered_here(ari_ports[other], user)

        # A call from the other pod, dialled as routing dials a phone through the edge.
        dial_string = f"PJSIP/{user}/sip:{user}@{edge_phones}"
        ari_run(
            other,
            RestCall(
                "POST",
                "/channels?"
                + urllib.parse.urlencode(
                    {
                        "endpoint": dial_string,
                        "context": "from-phones",
                        "extension": "s",
                        "timeout": "10",
                    }
                ),
            ),
        )
        received = next_request(phone, timeout_s=10)
        assert received is not None, edge_log.read_text()[-3000:]
        invite, source = received
        assert invite.startswith(f"INVITE sip:{user}@192.168.1.20:5060 "), invite
        assert source == ("127.0.0.1", EDGE_PUBLIC)
        phone.sendto(reply_to(invite, "486 Busy Here"), source)
        assert next_message(phone).startswith("ACK ")

        # Message waiting from the other pod: the ringwise-mwi dialplan finds no contact there
        # and notifies sip:<user>@<edge> (MWI_EDGE), which the edge takes to the phone.
        variables = mwi.notify_variables(
            user, "sip:acme-alice@ringwise", new=2, old=1, urgent=0, phones_via_edge=edge_phones
        )
        query = urllib.parse.urlencode(
            {
                "endpoint": mwi.LOCAL_ENDPOINT,
                "context": mwi.MWI_CONTEXT,
                "extension": "done",
                "timeout": "10",
            }
        )
        ari_run(other, RestCall("POST", f"/channels?{query}", body={"variables": variables}))
        received = next_request(phone, timeout_s=10)
        assert received is not None, edge_log.read_text()[-3000:]
        notify, source = received
        assert notify.startswith(f"NOTIFY sip:{user}@192.168.1.20:5060 "), notify
        assert "Messages-Waiting: yes" in notify
        assert "Voice-Message: 2/1" in notify
        phone.sendto(reply_to(notify, "200 OK"), source)


EDGE_PEERS = f"{RELEASE}-ringwise-sip-edge-peers.{NAMESPACE}.svc.cluster.local"


@contextmanager
def cluster_dns(name: str, addresses: list[str]) -> Iterator[Path]:
    """A DNS server answering name with addresses (A records, as the list is at each query),
    as the cluster's DNS answers a headless Service with its ready pods, and nothing else
    (NXDOMAIN); yields a resolv.conf naming it. It listens on port 53 of a loopback address
    of this port block."""
    server = f"127.53.{TEST_PORTS.base // 256 % 256}.{TEST_PORTS.base % 256}"
    stop = threading.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((server, 53))
    sock.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                query, source = sock.recvfrom(512)
            except TimeoutError:
                continue
            qid = struct.unpack("!H", query[:2])[0]
            end, labels = 12, []
            while query[end]:
                labels.append(query[end + 1 : end + 1 + query[end]].decode().lower())
                end += 1 + query[end]
            qtype = struct.unpack("!H", query[end + 1 : end + 3])[0]
            question = query[12 : end + 5]
            found = ".".join(labels) == name
            answers = [socket.inet_aton(a) for a in addresses] if found and qtype == 1 else []
            header = struct.pack("!HHHHHH", qid, 0x8180 if found else 0x8183, 1, len(answers), 0, 0)
            records = b"".join(struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + a for a in answers)
            sock.sendto(header + question + records, source)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    resolv_conf = Path(tempfile.mkdtemp()) / "resolv.conf"
    resolv_conf.write_text(f"nameserver {server}\noptions timeout:1 attempts:1\n")
    try:
        yield resolv_conf
    finally:
        stop.set()
        thread.join()
        sock.close()
        shutil.rmtree(resolv_conf.parent, ignore_errors=True)


@pytest.mark.integration
def test_edge_pods_copy_their_location_tables_to_each_other_over_dmq(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    """Edge pods with the chart's config for sipEdge.replicas > 1 (DMQ on), on 127.0.0.1,
    .2 and .3 with the same ports. Each finds the others as in a cluster: the peers' headless
    Service name, which a DNS server here answers with all three addresses (the pods, ready
    or not). The phone registers through the first; pod B's request through the second
    reaches it; a third started later receives the table in its initial sync; the
    de-registration reaches the second too."""
    user = "rw0d01"
    edges = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]

    def edge_at(address: str) -> Path:
        directory = tmp_path / address
        directory.mkdir()
        # The edges' own network here is loopback (a pod network in a cluster).
        values = copy.deepcopy(ci_values["minimal"])
        values["asterisk"]["network"] = {"localNets": ["127.0.0.0/8"]}
        config = edge_config_for_here(render, values, directory, f"1 sip:127.0.0.1:{POD_A}\n", 3600)
        text = config.read_text()
        # This edge's own sockets and names (the chart's @POD_IP@ and advertised names).
        for name in ("localhost", "127.0.0.1"):
            text = text.replace(f"advertise {name}:", f"advertise {address}:")
            text = text.replace(f"alias={name}:", f"alias={address}:")
            text = text.replace(f"udp:{name}:", f"udp:{address}:")
            text = text.replace(f"tcp:{name}:", f"tcp:{address}:")
        text = text.replace(
            '"server_address", "sip:127.0.0.1:', f'"server_address", "sip:{address}:'
        )
        # The peers by the Service's name, as rendered (resolvable_here put an address there).
        peers = f'modparam("dmq", "notification_address", "sip:{{}}:{EDGE_DMQ}")'
        assert peers.format("127.0.0.1") in text
        text = text.replace(peers.format("127.0.0.1"), peers.format(EDGE_PEERS))
        config.write_text(text)
        return config

    def notify_through(address: str, n: int) -> str:
        """Pod B's NOTIFY for the user at the edge on address; the final answer pod B gets
        (the phone, if reached, answers 200)."""
        request = to_phone_via_edge("NOTIFY", user, n, host=address)
        pod_b.sendto(request, (address, EDGE_PHONES))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for sock in (pod_b, phone):
                received = next_request(sock, timeout_s=0.1)
                if received is None:
                    continue
                message, source = received
                if sock is phone:
                    assert message.startswith(f"NOTIFY sip:{user}@192.168.1.20:5060 "), message
                    # Sent from that edge's public socket.
                    assert source == (address, EDGE_PUBLIC)
                    phone.sendto(reply_to(message, "200 OK"), source)
                elif not message.startswith("SIP/2.0 1"):
                    # The answer to this request (not a late copy of an earlier one's).
                    if sip_headers(message)["call-id"] == [f"loc-{n}"]:
                        return message.split("\r\n", 1)[0]
        raise AssertionError(f"no answer through {address}")

    def eventually(address: str, status: str, first: int) -> None:
        """Replication is asynchronous: the answer through address becomes status within 3 s."""
        answers = []
        for n in range(first, first + 6):
            answers.append(notify_through(address, n))
            if answers[-1] == status:
                return
            time.sleep(0.5)
        raise AssertionError(f"{address}: {answers}")

    first, second, third = (edge_at(address) for address in edges)
    # The peers' Service lists the edge pods that are ready (they answer on 5080).
    ready: list[str] = []
    with (
        cluster_dns(EDGE_PEERS, ready) as resolv_conf,
        udp_socket(POD_A) as pod_a,
        udp_socket(POD_B) as pod_b,
        udp_socket(PHONE) as phone,
        running_edge(kamailio_root, first, resolv_conf=resolv_conf) as first_log,
    ):
        ready.append("127.0.0.1")
        with running_edge(kamailio_root, second, "127.0.0.2", resolv_conf) as second_log:
            ready.append("127.0.0.2")
            assert notify_through("127.0.0.2", 1) == "SIP/2.0 404 Not registered here"
            assert register_answered(phone, pod_a, user, 1, "200 OK").startswith("SIP/2.0 200")
            assert notify_through("127.0.0.1", 2) == "SIP/2.0 200 OK"
            eventually("127.0.0.2", "SIP/2.0 200 OK", 10)

            # An edge pod that starts later (a rollout, a scale-up) asks its peers for the
            # table; then it goes away again.
            with running_edge(kamailio_root, third, "127.0.0.3", resolv_conf):
                ready.append("127.0.0.3")
                eventually("127.0.0.3", "SIP/2.0 200 OK", 20)
                ready.remove("127.0.0.3")

            # De-registered through the first edge: gone from the second too.
            assert register_answered(phone, pod_a, user, 2, "200 OK", expires=0).startswith(
                "SIP/2.0 200"
            )
            eventually("127.0.0.2", "SIP/2.0 404 Not registered here", 30)
        for log in (first_log, second_log):
            assert not re.search(r"\bBUG\b", log.read_text())


@pytest.mark.integration
def test_a_register_that_failed_over_past_a_dead_pod_is_in_the_location_table(
    render: Render,
    ci_values: dict[str, dict[str, Any]],
    kamailio_root: Path,
    tmp_path: Path,
) -> None:
    """The binding is saved from the 200 of the branch the failure route opened to the next
    pod, not only from the first branch's."""
    config = edge_config_for_here(
        render,
        ci_values["minimal"],
        tmp_path,
        f"1 sip:127.0.0.1:{DEAD_POD}\n1 sip:127.0.0.1:{POD_A}\n",
        ping_interval_s=3600,
    )
    user = "rw0000"  # hashes to the dead pod first
    with (
        udp_socket(POD_A) as pod_a,
        udp_socket(POD_B) as pod_b,
        udp_socket(PHONE) as phone,
        running_edge(kamailio_root, config) as edge_log,
    ):
        assert register_answered(phone, pod_a, user, 1, "200 OK").startswith("SIP/2.0 200")
        assert f"asterisk pod sip:127.0.0.1:{DEAD_POD} failed (408): marked down" in (
            edge_log.read_text()
        )
        pod_b.sendto(to_phone_via_edge("NOTIFY", user, 1), ("127.0.0.1", EDGE_PHONES))
        received = next_request(phone)
        assert received is not None, edge_log.read_text()[-3000:]
        assert received[0].startswith(f"NOTIFY sip:{user}@192.168.1.20:5060 ")
        phone.sendto(reply_to(received[0], "200 OK"), received[1])
        assert final_reply(pod_b).startswith("SIP/2.0 200")
