"""The chart renders, lints and validates its values: the SDK and a real helm binary agree."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from deploykit import (
    CHART,
    CI_VALUES,
    DEPLOYED_SERVICES,
    NAMESPACE,
    RELEASE,
    Manifest,
    Render,
    deep_merge,
    parse_manifests,
)

EXPECTED_CI_FILES = {"minimal", "production", "tls"}


def identity(obj: Manifest) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_ci_values_files_cover_minimal_production_and_tls() -> None:
    assert set(CI_VALUES) == EXPECTED_CI_FILES


@pytest.mark.parametrize("name", sorted(EXPECTED_CI_FILES))
def test_sdk_lint_is_clean_in_strict_mode(name: str, ci_values: dict[str, dict[str, Any]]) -> None:
    report = helm.lint(CHART, ci_values[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems or report["errors"]


@pytest.mark.parametrize("name", sorted(EXPECTED_CI_FILES))
def test_helm_binary_lint_strict(name: str, helm_bin: Path) -> None:
    result = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART), "-f", str(CI_VALUES[name])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED_CI_FILES))
def test_sdk_render_matches_helm_template(
    name: str, helm_bin: Path, rendered: dict[str, list[Manifest]]
) -> None:
    result = subprocess.run(
        [
            str(helm_bin),
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "-f",
            str(CI_VALUES[name]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    from_binary = {identity(obj): obj for obj in parse_manifests(result.stdout)}
    from_sdk = {identity(obj): obj for obj in rendered[name]}
    assert from_sdk.keys() == from_binary.keys()
    for key, obj in from_sdk.items():
        assert obj == from_binary[key], f"{key} differs between the SDK and helm template"


def test_every_component_is_rendered(rendered: dict[str, list[Manifest]]) -> None:
    kinds = {identity(obj) for obj in rendered["production"]}
    for service in DEPLOYED_SERVICES:
        name = f"{RELEASE}-ringwise-{service}"
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"):
            assert (kind, name) in kinds, (kind, name)
    for expected in [
        ("StatefulSet", f"{RELEASE}-ringwise-asterisk"),
        ("Service", f"{RELEASE}-ringwise-asterisk"),
        ("Deployment", f"{RELEASE}-ringwise-sip-edge"),
        ("ConfigMap", f"{RELEASE}-ringwise-sip-edge"),
        ("Ingress", f"{RELEASE}-ringwise-gateway"),
        ("ServiceMonitor", f"{RELEASE}-ringwise"),
        ("HorizontalPodAutoscaler", f"{RELEASE}-ringwise-gateway"),
    ]:
        assert expected in kinds, expected


def test_routing_runs_as_sidecar_of_each_asterisk_pod(rendered: dict[str, list[Manifest]]) -> None:
    (sts,) = [o for o in rendered["minimal"] if o["kind"] == "StatefulSet"]
    containers = {c["name"]: c for c in sts["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"asterisk", "routing"}
    env = {e["name"]: e for e in containers["routing"]["env"]}
    assert env["RINGWISE_ARI_URL"]["value"] == "http://127.0.0.1:8088"
    # Both containers read the same ARI password from the Secret.
    assert (
        env["RINGWISE_ARI_PASSWORD"]["valueFrom"]
        == {e["name"]: e for e in containers["asterisk"]["env"]}["RINGWISE_ARI_PASSWORD"][
            "valueFrom"
        ]
    )
    assert not any(
        d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-routing")
        for d in rendered["minimal"]
    )


def test_dispatcher_lists_every_asterisk_pod(rendered: dict[str, list[Manifest]]) -> None:
    (edge_config,) = [
        o
        for o in rendered["production"]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-sip-edge")
    ]
    entries = edge_config["data"]["dispatcher.list"].split()
    targets = [e for e in entries if e.startswith("sip:")]
    assert targets == [
        f"sip:{RELEASE}-ringwise-asterisk-{i}.{RELEASE}-ringwise-asterisk.{NAMESPACE}"
        f".svc.cluster.local:5070"
        for i in range(4)
    ]


def test_pod_services_mode_exposes_each_pods_rtp_range(rendered: dict[str, list[Manifest]]) -> None:
    rtp = [o for o in rendered["tls"] if o["metadata"]["name"].endswith("-rtp")]
    assert [o["spec"]["loadBalancerIP"] for o in rtp] == ["203.0.113.21", "203.0.113.22"]
    for i, svc in enumerate(rtp):
        ports = [p["port"] for p in svc["spec"]["ports"]]
        assert ports == list(range(10000, 10200))
        assert {p["protocol"] for p in svc["spec"]["ports"]} == {"UDP"}
        pod = svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"]
        assert pod == f"{RELEASE}-ringwise-asterisk-{i}"
    (sts,) = [o for o in rendered["tls"] if o["kind"] == "StatefulSet"]
    assert "hostNetwork" not in sts["spec"]["template"]["spec"]


def test_extra_asterisk_config_is_mounted_over_the_templates(
    rendered: dict[str, list[Manifest]],
) -> None:
    (config,) = [
        o for o in rendered["production"] if o["metadata"]["name"].endswith("-asterisk-config")
    ]
    assert list(config["data"]) == ["musiconhold.conf"]
    (sts,) = [o for o in rendered["production"] if o["kind"] == "StatefulSet"]
    (asterisk,) = [
        c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "asterisk"
    ]
    assert {
        "name": "extra-config",
        "mountPath": "/usr/share/ringwise/asterisk/etc/musiconhold.conf",
        "subPath": "musiconhold.conf",
        "readOnly": True,
    } in asterisk["volumeMounts"]
    assert not any(o["metadata"]["name"].endswith("-asterisk-config") for o in rendered["minimal"])


def test_tls_values_put_tls_on_the_gateway_ingress(rendered: dict[str, list[Manifest]]) -> None:
    (ingress,) = [o for o in rendered["tls"] if o["kind"] == "Ingress"]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["api.ringwise.example.com"], "secretName": "ringwise-api-tls"}
    ]
    (plain,) = [o for o in rendered["minimal"] if o["kind"] == "Ingress"]
    assert "tls" not in plain["spec"]


def test_scaling_asterisk_rolls_the_sip_edge(render: Render, ci_values: dict[str, Any]) -> None:
    def edge_checksum(replicas: int) -> str:
        values = copy.deepcopy(ci_values["minimal"])
        values["asterisk"]["replicas"] = replicas
        (edge,) = [
            o
            for o in render(values)
            if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-sip-edge")
        ]
        return str(edge["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert edge_checksum(2) != edge_checksum(3)


def with_change(base: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(base)
    *parents, leaf = dotted.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return values


# One row per mistake an operator can make, and the words the rejection must contain.
BAD_VALUES = [
    ("secrets.existingSecret", "", "/secrets/existingSecret"),
    ("secrets.natsUrl", "nats://user:pw@nats:4222", "additional properties 'natsUrl'"),
    ("image.tag", "latest", "/image/tag"),
    ("image.tag", "", "/image/tag"),
    ("imageOverrides.routing", "ringwise/routing", "/imageOverrides/routing"),
    ("imageOverrides.routing", "ringwise/routing:latest", "/imageOverrides/routing"),
    ("asterisk.rtp.start", 10001, "/asterisk/rtp/start"),
    ("asterisk.rtp.start", 80, "/asterisk/rtp/start"),
    ("asterisk.trustedSipSources", [], "/asterisk/trustedSipSources"),
    ("asterisk.trustedSipSources", ["not-an-ip"], "/asterisk/trustedSipSources/0"),
    ("asterisk.network.mode", "nodePort", "/asterisk/network/mode"),
    ("asterisk.replicas", 0, "/asterisk/replicas"),
    ("sipEdge.advertisedAddress", "", "/sipEdge/advertisedAddress"),
    ("sipEdge.phonesViaEdge", "yes", "/sipEdge/phonesViaEdge"),
    ("services.billing.port", 80, "/services/billing/port"),
    # null deletes the chart's default (helm's rule): a container without resources.
    ("services.billing.resources", None, "'resources'"),
    (
        "services.gateway.extraEnv",
        [{"name": "RINGWISE_MONGO_URL", "value": "mongodb://u:p@m"}],
        "/services/gateway/extraEnv/0/name",
    ),
    ("services.sms", {"enabled": True}, "additional properties 'sms'"),
    ("podSecurityContext.runAsNonRoot", False, "/podSecurityContext/runAsNonRoot"),
    (
        "containerSecurityContext.capabilities",
        {"drop": ["NET_RAW"]},
        "/containerSecurityContext/capabilities/drop",
    ),
    ("ingress.tls", {"enabled": True, "secretName": ""}, "/ingress/tls/secretName"),
    ("asterisk.extraConfig", {"ari.conf": "password = hunter2"}, "/asterisk/extraConfig/ari.conf"),
    ("asterisk.extraConfig", {"../etc/passwd": "x"}, "additional properties '../etc/passwd'"),
    ("logLevel", "verbose", "/logLevel"),
    ("nats.streamReplicas", 7, "/nats/streamReplicas"),
    ("s3.bucket", "Not_A_Bucket", "/s3/bucket"),
    ("asterisk.ariBindAddress", "asterisk-0.pod", "/asterisk/ariBindAddress"),
    ("asterisk.ariBindAddress", "", "/asterisk/ariBindAddress"),
    ("smtp.starttls", True, "additional properties 'starttls'"),
    ("smtp.security", "ssl", "/smtp/security"),
    ("smtp.caBundle", {"configMap": "Not A Name", "key": "ca.crt"}, "/smtp/caBundle/configMap"),
    # AUTH over plain text: the password would cross the network in clear.
    (
        "smtp",
        {
            "host": "smtp.example.com",
            "port": 25,
            "from": "voicemail@example.com",
            "security": "none",
            "verifyTls": True,
            "caBundle": {"configMap": "", "key": "ca.crt"},
            "auth": {"enabled": True, "existingSecret": ""},
        },
        "/smtp/security",
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_schema_rejects_bad_values_naming_the_key(
    key: str, value: Any, message: str, ci_values: dict[str, dict[str, Any]]
) -> None:
    values = with_change(ci_values["minimal"], key, value)
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as raised:
        chart.validate_schema(values)
    assert message in str(raised.value)


def test_schema_accepts_every_ci_values_file(ci_values: dict[str, dict[str, Any]]) -> None:
    with helm.Chart.load(CHART) as chart:
        for values in ci_values.values():
            chart.validate_schema(values)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "asterisk": {
                    "network": {"mode": "podServices", "externalAddresses": ["203.0.113.1"]}
                }
            },
            "needs one asterisk.network.externalAddresses entry per replica",
        ),
        (
            {
                "asterisk": {
                    "rtp": {"start": 10000, "end": 10999},
                    "network": {
                        "mode": "podServices",
                        "externalAddresses": ["203.0.113.1", "203.0.113.2"],
                    },
                }
            },
            "at most 256 ports",
        ),
        (
            {
                "asterisk": {
                    "network": {
                        "externalAddress": "203.0.113.1",
                        "externalAddresses": ["203.0.113.1", "203.0.113.2"],
                    }
                }
            },
            "not both",
        ),
        ({"asterisk": {"rtp": {"start": 20000, "end": 10000}}}, "must be above"),
    ],
)
def test_inconsistent_network_values_fail_rendering_with_a_clear_message(
    change: dict[str, Any], message: str, ci_values: dict[str, dict[str, Any]]
) -> None:
    values = deep_merge(ci_values["minimal"], change)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)  # each value is fine alone: the template catches the mix
        with pytest.raises(helm.HelmError) as raised:
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(raised.value)


EDGE_PHONES_SOCKET = f"{RELEASE}-ringwise-sip-edge-internal.{NAMESPACE}.svc.cluster.local:5091"


def phones_via_edge_env(objects: list[Manifest]) -> dict[str, str | None]:
    """RINGWISE_PHONES_VIA_EDGE of the routing sidecar and of voicemail."""
    found: dict[str, str | None] = {}
    for obj in objects:
        if obj["kind"] not in {"StatefulSet", "Deployment"}:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] == "RINGWISE_PHONES_VIA_EDGE":
                    found[container["name"]] = env.get("value")
    return found


def test_routing_and_voicemail_reach_phones_through_the_edges_location_table(
    render: Render, ci_values: dict[str, dict[str, Any]]
) -> None:
    # On by default: the edge's phone socket (its internal Service) for both, nobody else.
    assert phones_via_edge_env(render(ci_values["minimal"])) == {
        "routing": EDGE_PHONES_SOCKET,
        "voicemail": EDGE_PHONES_SOCKET,
    }
    # Off: empty, i.e. PJSIP/<user> and the sending pod's own contacts, as before.
    off = with_change(ci_values["minimal"], "sipEdge.phonesViaEdge", False)
    assert phones_via_edge_env(render(off)) == {"routing": "", "voicemail": ""}


def test_several_edge_pods_share_their_location_tables_over_dmq(
    render: Render, ci_values: dict[str, dict[str, Any]]
) -> None:
    peers = f"{RELEASE}-ringwise-sip-edge-peers"

    def edge_objects(replicas: int) -> tuple[str, list[Manifest]]:
        objects = render(with_change(ci_values["minimal"], "sipEdge.replicas", replicas))
        (config_map,) = [
            o
            for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-sip-edge")
        ]
        return config_map["data"]["kamailio.cfg"], objects

    config, objects = edge_objects(2)
    assert 'loadmodule "dmq_usrloc.so"' in config
    assert (
        f'modparam("dmq", "notification_address", "sip:{peers}.{NAMESPACE}.svc.cluster.local:5092")'
        in config
    )
    # KDMQ only from the cluster's own networks (asterisk.network.localNets).
    assert (
        'if (is_method("KDMQ") && (is_in_subnet("$si", "10.0.0.0/8") || '
        'is_in_subnet("$si", "172.16.0.0/12") || is_in_subnet("$si", "192.168.0.0/16")))'
    ) in config
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == peers]
    assert service["spec"]["clusterIP"] == "None"
    # Only ready pods: one notified before it listens would be taken for gone (DMQ).
    assert service["spec"]["publishNotReadyAddresses"] is False
    assert 'modparam("dmq", "ping_interval", 15)' in config
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-sip-edge")
    ]
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "dmq", "containerPort": 5092, "protocol": "UDP"} in ports
    # Only the edge pods may send to the DMQ port.
    (policy,) = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == f"{RELEASE}-ringwise-sip-edge"
    ]
    (dmq_rule,) = [
        r for r in policy["spec"]["ingress"] if {"port": "dmq", "protocol": "UDP"} in r["ports"]
    ]
    assert dmq_rule["from"] == [
        {"podSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}
    ]
    # One edge pod: the location table without DMQ (nothing to copy to).
    config, objects = edge_objects(1)
    assert 'loadmodule "usrloc.so"' in config
    assert "dmq" not in config
    assert not [o for o in objects if o["metadata"]["name"] == peers]
