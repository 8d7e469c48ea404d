"""The SIP edge's kamailio.cfg, as the chart renders it, passes Kamailio's own config check
(`kamailio -c`, the image's Kamailio version unpacked from Debian), and its entrypoint fills
in the pod address exactly where the config expects it."""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from deploykit import REPO, Manifest, Render, container_asterisk, invite_final_code
from ringwise_dev import asterisk as dev_asterisk
from ringwise_dev.ports import TEST_PORTS

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
    recognise it as its own in Record-Route, through its alias)."""
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


def options_answered(port: int) -> bool:
    """An OPTIONS ping to the edge itself is answered 200 (load balancers' health checks)."""
    request = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port + 1000};branch=z9hG4bK-edge-check\r\n"
        "From: <sip:check@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
        "Call-ID: edge-check\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.bind(("127.0.0.1", port + 1000))
        sock.sendto(request.encode(), ("127.0.0.1", port))
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
def running_edge(kamailio_root: Path, config: Path) -> Iterator[Path]:
    """Kamailio on config until the block ends; yields the path of its log."""
    libdir = kamailio_root / "usr" / "lib" / "x86_64-linux-gnu" / "kamailio"
    run_dir = config.parent / "run"
    run_dir.mkdir()
    log_path = config.parent / "kamailio.log"
    with log_path.open("w") as log:
        edge = subprocess.Popen(
            [
                str(kamailio_root / "usr" / "sbin" / "kamailio"),
                "-DD",
                "-E",
                "-f",
                str(config),
                "-L",
                str(libdir / "modules"),
                "-Y",
                str(run_dir),
            ],
            env={"LD_LIBRARY_PATH": str(libdir)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 15
            while not options_answered(EDGE_PUBLIC):
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
