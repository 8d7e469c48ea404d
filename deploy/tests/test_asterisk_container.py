"""The Asterisk image's entrypoint (asterisk/entrypoint.py): it renders asterisk/etc exactly
like the local platform, checks its settings, writes the NAT settings of its pod, and the
configuration it writes boots a real Asterisk 22 (the local platform's chroot)."""

from __future__ import annotations

import base64
import copy
import importlib.util
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deploykit import REPO, Render, container_asterisk, invite_final_code
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
    # ARI only for the sidecar unless the chart opens it (RINGWISE_ARI_BIND=0.0.0.0).
    assert values["RINGWISE_ARI_BIND"] == "127.0.0.1"


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
        ({"RINGWISE_ARI_BIND": "asterisk-0.local"}, "RINGWISE_ARI_BIND='asterisk-0.local' is not"),
        ({"RINGWISE_ARI_BIND": "0.0.0.0,::"}, "is not an IP address"),
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


def pre_stop_commands(render: Render, minimal: dict[str, Any]) -> dict[str, list[str]]:
    """The chart's preStop hooks of the Asterisk pod, by container, for this check's ARI port."""
    values = copy.deepcopy(minimal)
    values["asterisk"]["ariPort"] = ARI_PORT
    (sts,) = [o for o in render(values) if o["kind"] == "StatefulSet"]
    return {
        c["name"]: c["lifecycle"]["preStop"]["exec"]["command"]
        for c in sts["spec"]["template"]["spec"]["containers"]
    }


@pytest.mark.integration
def test_entrypoint_config_boots_asterisk_with_the_pods_nat_settings(
    render: Render, ci_values: dict[str, dict[str, Any]]
) -> None:
    env = {
        "HOSTNAME": "rw-ringwise-asterisk-1",
        "RINGWISE_ARI_PASSWORD": "s3cret-Pa55",
        "RINGWISE_PSTN_HOST": "10.244.0.0/16,127.0.0.1",
        "RINGWISE_SIP_PORT": str(SIP_PORT),
        "RINGWISE_ARI_PORT": str(ARI_PORT),
        "RINGWISE_RTP_START": str(RTP[0]),
        "RINGWISE_RTP_END": str(RTP[1]),
        "RINGWISE_EXTERNAL_ADDRESSES": "198.51.100.11,198.51.100.12",
        "RINGWISE_LOCAL_NETS": "10.0.0.0/8",
    }
    with container_asterisk(f"container-check-{TEST_PORTS.base}", env) as asterisk:
        transport = asterisk.rx("pjsip show transport transport-udp")
        assert f"127.0.0.1:{SIP_PORT}" in transport
        assert "external_media_address      : 198.51.100.12" in transport
        assert "external_signaling_address  : 198.51.100.12" in transport
        assert "local_net                   : 10.0.0.0/255.0.0.0" in transport
        assert "Match: 10.244.0.0/16" in asterisk.rx("pjsip show endpoint pstn")
        assert "Match: 127.0.0.1/32" in asterisk.rx("pjsip show endpoint pstn")
        token = base64.b64encode(b"ringwise:s3cret-Pa55").decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{ARI_PORT}/ari/asterisk/info",
            headers={"Authorization": f"Basic {token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        assert "rw-ringwise-asterisk-1" in asterisk.rx("core show settings")
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
            part.replace("/var/lib/ringwise-asterisk", asterisk.instance_dir)
            for part in hooks["asterisk"]
        ]
        subprocess.run(["chroot", str(asterisk.root), *asterisk_hook], timeout=30, check=True)
        assert asterisk.process.wait(timeout=10) == 0
        subprocess.run(hooks["routing"], timeout=10, check=True)


def ari_answers(address: str, port: int) -> bool:
    token = base64.b64encode(b"ringwise:s3cret-Pa55").decode()
    request = urllib.request.Request(
        f"http://{address}:{port}/ari/asterisk/info",
        headers={"Authorization": f"Basic {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.integration
def test_ari_listens_on_the_bind_address_the_pod_is_given() -> None:
    """RINGWISE_ARI_BIND reaches Asterisk's http.conf: here 127.0.0.2 stands for the pod's
    address (the chart gives 0.0.0.0; all interfaces are not opened on a shared machine)."""
    port = ARI_PORT + 1
    env = {
        "HOSTNAME": "rw-ringwise-asterisk-0",
        "RINGWISE_ARI_PASSWORD": "s3cret-Pa55",
        "RINGWISE_PSTN_HOST": "10.244.0.0/16",
        "RINGWISE_SIP_PORT": str(SIP_PORT + 2),
        "RINGWISE_ARI_PORT": str(port),
        "RINGWISE_ARI_BIND": "127.0.0.2",
        "RINGWISE_RTP_START": str(RTP[0]),
        "RINGWISE_RTP_END": str(RTP[1]),
    }
    with container_asterisk(f"container-bind-check-{TEST_PORTS.base}", env) as asterisk:
        assert f"127.0.0.2:{port}" in asterisk.rx("http show status")
        assert ari_answers("127.0.0.2", port)
        assert not ari_answers("127.0.0.1", port)


@pytest.mark.integration
def test_the_trunk_is_only_the_edges_trunk_port(
    render: Render, ci_values: dict[str, dict[str, Any]]
) -> None:
    """The chart renders asterisk.trustedSipSources with the SIP edge's trunk port (identify
    `match` with a source port): an INVITE from that port is the trusted PSTN trunk (refused
    with 503 here, no routing being connected); from the same address on another port (the
    edge's phone socket) it is not, and Asterisk challenges it like any phone."""
    trunk_port = SIP_PORT + 5
    values = copy.deepcopy(ci_values["minimal"])
    values["asterisk"]["trustedSipSources"] = ["10.244.0.0/16", "127.0.0.1/32"]
    (sts,) = [o for o in render(values) if o["kind"] == "StatefulSet"]
    (asterisk_container,) = [
        c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "asterisk"
    ]
    (pstn_host,) = [
        e["value"] for e in asterisk_container["env"] if e["name"] == "RINGWISE_PSTN_HOST"
    ]
    assert pstn_host == "10.244.0.0:5090/16,127.0.0.1:5090/32"
    env = {
        "HOSTNAME": "rw-ringwise-asterisk-0",
        "RINGWISE_ARI_PASSWORD": "s3cret-Pa55",
        # The edge's trunk socket is 5090 in a pod; a free port of this check's block here.
        "RINGWISE_PSTN_HOST": pstn_host.replace(":5090/", f":{trunk_port}/"),
        "RINGWISE_SIP_PORT": str(SIP_PORT + 3),
        "RINGWISE_ARI_PORT": str(ARI_PORT + 2),
        "RINGWISE_RTP_START": str(RTP[0]),
        "RINGWISE_RTP_END": str(RTP[1]),
    }
    with container_asterisk(f"container-trunk-port-check-{TEST_PORTS.base}", env):
        assert invite_final_code(SIP_PORT + 3, trunk_port) == 503
        assert invite_final_code(SIP_PORT + 3, trunk_port + 1) == 401
