"""The SIP edge's kamailio.cfg, as the chart renders it, passes Kamailio's own config check
(`kamailio -c`, the image's Kamailio version unpacked from Debian), and its entrypoint fills
in the pod address exactly where the config expects it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from deploykit import REPO, Manifest

ENTRYPOINT = REPO / "deploy" / "sip-edge" / "entrypoint.sh"
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


def write_rendered(data: dict[str, str], pod_ip: str, directory: Path) -> None:
    """What the entrypoint does: the pod address into the config; the list stays as is."""
    (directory / "dispatcher.list").write_text(data["dispatcher.list"])
    config = data["kamailio.cfg"].replace("@POD_IP@", pod_ip)
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
