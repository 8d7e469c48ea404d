"""Every rendered object is valid Kubernetes (kubernetes-validate --strict), on the oldest
version the chart supports in practice and the newest the validator ships, and follows the
project's policies: probes, resources, non-root, pinned images, no secrets in ConfigMaps,
app.kubernetes.io labels, and only the gateway and the SIP edge reachable from outside."""

from __future__ import annotations

import functools
import importlib
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from deploykit import DEPLOYED_SERVICES, NAMESPACE, RELEASE, Manifest
from pydantic_settings import BaseSettings
from ringwise_kit.ari import ari_url_for

KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
# Custom resources: their schemas come with their operators, not with Kubernetes.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
REQUIRED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}
# A tag that names a release, or a digest; never a moving tag.
PINNED_IMAGE = re.compile(
    r"^[^\s@]+(:(?!latest$|stable$|main$|master$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
    r"(@sha256:[a-f0-9]{64})?$|^[^\s@]+@sha256:[a-f0-9]{64}$"
)
SECRET_NAME = re.compile(r"(password|secret|token|credential|private|access_key)", re.I)
SENSITIVE_KEY = re.compile(r"(password|secret|token|credential|private|_url$|-url$|key)", re.I)
# Values that look like credentials: user:password@ in a URL, PEM blocks, AWS-style keys.
SENSITIVE_VALUE = re.compile(
    r"://[^/\s:@]+:[^/\s@]+@|-----BEGIN [A-Z ]*PRIVATE KEY|AKIA[0-9A-Z]{16}"
)


def all_objects(rendered: dict[str, list[Manifest]]) -> Iterator[tuple[str, Manifest]]:
    for name, objects in rendered.items():
        for obj in objects:
            yield name, obj


def pod_spec(obj: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def containers(rendered: dict[str, list[Manifest]]) -> Iterator[tuple[str, Manifest, Any]]:
    for name, obj in all_objects(rendered):
        if obj["kind"] in WORKLOAD_KINDS:
            for container in pod_spec(obj)["containers"] + pod_spec(obj).get("initContainers", []):
                yield name, obj, container


@pytest.fixture(scope="module")
def cached_schemas() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files (megabytes of JSON) for every
    object; read each once here (same files, same validation, a fraction of the time)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubernetes_validate.utils,
            "schema_contents",
            functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents),
        )
        yield


@pytest.mark.usefixtures("cached_schemas")
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes_strict(
    version: str, rendered: dict[str, list[Manifest]]
) -> None:
    failures = []
    checked = 0
    for values_name, obj in all_objects(rendered):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            failures.append(
                f"{values_name}: {obj['kind']}/{obj['metadata']['name']} {path}: {error.message}"
            )
    assert failures == []
    assert checked > 100


def test_custom_resources_are_only_the_known_ones(rendered: dict[str, list[Manifest]]) -> None:
    kinds = {(obj["apiVersion"], obj["kind"]) for _, obj in all_objects(rendered)}
    unknown = set()
    for api_version, kind in kinds - CUSTOM_KINDS:
        try:
            kubernetes_validate.validate(
                {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}},
                KUBERNETES_VERSIONS[-1],
            )
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add((api_version, kind))
        except kubernetes_validate.ValidationError:
            pass  # a schema exists; this bare object is simply incomplete
    assert unknown == set()


def test_service_monitor_selects_the_release_metrics_ports(
    rendered: dict[str, list[Manifest]],
) -> None:
    (monitor,) = [o for o in rendered["production"] if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [o for o in rendered["production"] if o["kind"] == "Service"]
    scraped = [
        s
        for s in services
        if selector.items() <= s["metadata"]["labels"].items()
        and any(p["name"] == "http" for p in s["spec"]["ports"])
    ]
    # Six services plus the routing sidecars behind the Asterisk headless Service.
    assert len(scraped) == 7
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_every_container_has_probes_and_resources(rendered: dict[str, list[Manifest]]) -> None:
    for values_name, obj, container in containers(rendered):
        where = f"{values_name}: {obj['metadata']['name']}/{container['name']}"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, f"{where} has no {probe}"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"].get(bound, {}).keys(), where


def test_kit_services_probe_healthz_and_readyz(rendered: dict[str, list[Manifest]]) -> None:
    for _, obj, container in containers(rendered):
        if container["name"] in {"asterisk", "kamailio"}:
            continue
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["readinessProbe"]["httpGet"]["port"] == "http", obj["metadata"]["name"]


def test_every_container_runs_unprivileged(rendered: dict[str, list[Manifest]]) -> None:
    for values_name, obj, container in containers(rendered):
        where = f"{values_name}: {obj['metadata']['name']}/{container['name']}"
        pod = pod_spec(obj).get("securityContext", {})
        ctx = container.get("securityContext", {})
        assert (ctx.get("runAsNonRoot", pod.get("runAsNonRoot"))) is True, where
        assert ctx.get("runAsUser", pod.get("runAsUser", 0)) >= 1000, where
        assert ctx.get("allowPrivilegeEscalation") is False, where
        assert ctx.get("privileged", False) is False, where
        assert ctx.get("readOnlyRootFilesystem") is True, where
        assert ctx["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in ctx["capabilities"], where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod_spec(obj).get("automountServiceAccountToken") is False, where


def test_every_image_is_pinned(rendered: dict[str, list[Manifest]]) -> None:
    for values_name, obj, container in containers(rendered):
        assert PINNED_IMAGE.match(container["image"]), (values_name, container["image"])
        assert container["imagePullPolicy"] in {"IfNotPresent", "Never"}, obj["metadata"]["name"]


def test_nothing_sensitive_in_config_maps(rendered: dict[str, list[Manifest]]) -> None:
    for values_name, obj in all_objects(rendered):
        if obj["kind"] != "ConfigMap":
            continue
        for key, value in obj.get("data", {}).items():
            assert not SENSITIVE_KEY.search(key), (values_name, obj["metadata"]["name"], key)
            assert not SENSITIVE_VALUE.search(value), (values_name, obj["metadata"]["name"], key)


def test_credentials_come_only_from_the_existing_secret(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert not any(obj["kind"] == "Secret" for _, obj in all_objects(rendered))
    from_secret = set()
    for values_name, _obj, container in containers(rendered):
        for env in container.get("env", []):
            if "value" in env:
                # A literal is fine only if it carries no credential (ARI's loopback URL).
                assert not SECRET_NAME.search(env["name"]), (values_name, env["name"])
                assert not SENSITIVE_VALUE.search(env["value"]), (values_name, env["name"])
            elif "secretKeyRef" in env["valueFrom"]:
                assert env["valueFrom"]["secretKeyRef"]["name"].startswith("ringwise-")
                from_secret.add(env["name"])
    assert {
        "RINGWISE_NATS_URL",
        "RINGWISE_REDIS_URL",
        "RINGWISE_MONGO_URL",
        "RINGWISE_ARI_PASSWORD",
        "RINGWISE_S3_ACCESS_KEY",
        "RINGWISE_S3_SECRET_KEY",
        "RINGWISE_TOKEN_SIGNING_KEY",
        "RINGWISE_RECORDING_PLATFORM_KEY",
        "RINGWISE_OPERATOR_PASSWORD",
    } <= from_secret


def test_every_object_carries_the_recommended_labels(rendered: dict[str, list[Manifest]]) -> None:
    for values_name, obj in all_objects(rendered):
        labels = obj["metadata"].get("labels", {})
        assert labels.keys() >= REQUIRED_LABELS, (values_name, obj["kind"], obj["metadata"]["name"])
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/part-of"] == "ringwise"
        if obj["kind"] in WORKLOAD_KINDS:
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert pod_labels.keys() >= REQUIRED_LABELS
            assert obj["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_every_workload_has_a_disruption_budget(rendered: dict[str, list[Manifest]]) -> None:
    for values_name, objects in rendered.items():
        budgets = [
            o["spec"]["selector"]["matchLabels"]
            for o in objects
            if o["kind"] == "PodDisruptionBudget"
        ]
        for obj in objects:
            if obj["kind"] in {"Deployment", "StatefulSet"}:
                labels = obj["spec"]["template"]["metadata"]["labels"]
                assert any(b.items() <= labels.items() for b in budgets), (
                    values_name,
                    obj["metadata"]["name"],
                )


EXTERNALLY_EXPOSED_COMPONENTS = {"gateway", "sip-edge", "asterisk"}


def test_only_the_gateway_and_the_sip_edge_are_reachable_from_outside(
    rendered: dict[str, list[Manifest]],
) -> None:
    for values_name, objects in rendered.items():
        policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
        # A default deny covers every pod of the release.
        assert any(
            p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}
            and "ingress" not in p["spec"]
            for p in policies
        ), values_name
        for policy in policies:
            component = policy["spec"]["podSelector"]["matchLabels"].get(
                "app.kubernetes.io/component"
            )
            for rule in policy["spec"].get("ingress", []):
                for source in rule.get("from", []):
                    if "ipBlock" in source:
                        # Addresses outside the cluster reach only the SIP edge (SIP) and
                        # Asterisk (RTP media, the port range), never a service's API; the
                        # edge's internal ports (trunk, phones) only from private (node) networks.
                        assert component in {"sip-edge", "asterisk"}, (values_name, policy)
                        ports = {p.get("port") for p in rule["ports"]}
                        internal = {"sip-cluster", "sip-phones"}
                        assert ports in ({"sip"}, internal, {10000}, {20000}), (
                            values_name,
                            ports,
                        )
                        if ports == internal:
                            cidr = ipaddress.ip_network(source["ipBlock"]["cidr"])
                            assert cidr.is_private, (values_name, cidr)
                    if "namespaceSelector" in source and component == "gateway":
                        assert source["namespaceSelector"]["matchLabels"] == {
                            "kubernetes.io/metadata.name": "ingress-nginx"
                        } or source["namespaceSelector"]["matchLabels"] == {
                            "kubernetes.io/metadata.name": "monitoring"
                        }
        exposed = {
            o["metadata"]["labels"]["app.kubernetes.io/component"]
            for o in objects
            if o["kind"] == "Service" and o["spec"].get("type") in {"LoadBalancer", "NodePort"}
        }
        assert exposed <= {"sip-edge", "asterisk"}, (values_name, exposed)
        ingress_backends = {
            path["backend"]["service"]["name"]
            for o in objects
            if o["kind"] == "Ingress"
            for rule in o["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert ingress_backends == {f"{RELEASE}-ringwise-gateway"}


def settings_fields(service: str) -> set[str]:
    """The RINGWISE_* variables a service reads: the fields of its settings class."""
    module = importlib.import_module(
        "ringwise_kit.config" if service == "messaging" else f"ringwise_{service}.settings"
    )
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, BaseSettings) and c.__module__ == module.__name__
    ]
    return {f"RINGWISE_{name.upper()}" for c in classes for name in c.model_fields}


def test_settings_reach_the_services_that_read_them(rendered: dict[str, list[Manifest]]) -> None:
    env_of: dict[str, set[str]] = {}
    for _, _obj, container in containers({"production": rendered["production"]}):
        env_of[container["name"]] = {e["name"] for e in container.get("env", [])}
    for name in (*DEPLOYED_SERVICES, "routing"):
        assert {"RINGWISE_NATS_URL", "RINGWISE_HTTP_PORT", "RINGWISE_HTTP_HOST"} <= env_of[name]
        # Every variable the chart sets is one the service reads (a misspelt name would be
        # silently ignored by pydantic-settings and the service would run on its default).
        unknown = env_of[name] - settings_fields(name)
        assert unknown == set(), f"{name} does not read {sorted(unknown)}"
    assert "RINGWISE_MONGO_URL" in env_of["directory"] & env_of["billing"]
    assert "RINGWISE_DIRECTORY_DB" in env_of["directory"]
    assert "RINGWISE_BILLING_DB" in env_of["billing"]
    assert {
        "RINGWISE_REDIS_URL",
        "RINGWISE_ARI_URL",
        "RINGWISE_ARI_PASSWORD",
        "RINGWISE_MONGO_URL",
        "RINGWISE_ROUTING_DB",
    } <= env_of["routing"]
    assert {"RINGWISE_REDIS_URL", "RINGWISE_TOKEN_SIGNING_KEY"} <= env_of["gateway"]
    assert {"RINGWISE_OPERATOR_EMAIL", "RINGWISE_OPERATOR_PASSWORD"} <= env_of["directory"]
    assert {
        "RINGWISE_RECORDINGS_BUCKET",
        "RINGWISE_S3_SECRET_KEY",
        "RINGWISE_RECORDING_PLATFORM_KEY",
    } <= env_of["recording"]
    assert {"RINGWISE_S3_BUCKET", "RINGWISE_SMTP_HOST", "RINGWISE_MAIL_FROM"} <= env_of["voicemail"]
    assert "RINGWISE_MONGO_URL" not in env_of["messaging"]
    (settings,) = [
        o
        for o in rendered["production"]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-settings")
    ]
    assert settings["data"]["RINGWISE_STREAM_REPLICAS"] == "3"


def component_of(selector: dict[str, Any]) -> str | None:
    labels: dict[str, str] = selector.get("matchLabels", {})
    return labels.get("app.kubernetes.io/component")


def test_asterisk_ari_is_reachable_only_from_voicemail_and_recording(
    rendered: dict[str, list[Manifest]],
) -> None:
    """ARI listens on the pod's addresses (the sidecar uses localhost, which NetworkPolicy does
    not filter); of the other pods only voicemail and recording may open it."""
    for values_name, objects in rendered.items():
        (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
        asterisk = next(c for c in pod_spec(sts)["containers"] if c["name"] == "asterisk")
        ari_port = next(p for p in asterisk["ports"] if p["name"] == "ari")
        assert ari_port["protocol"] == "TCP"
        ari_ports = {"ari", ari_port["containerPort"]}
        policies = [
            o
            for o in objects
            if o["kind"] == "NetworkPolicy" and component_of(o["spec"]["podSelector"]) == "asterisk"
        ]
        admitted = []
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                # A rule without ports would open every port, ARI's too.
                assert rule.get("ports"), (values_name, policy["metadata"]["name"])
                if {p["port"] for p in rule["ports"]} & ari_ports:
                    assert [p["port"] for p in rule["ports"]] == ["ari"], values_name
                    admitted += rule["from"]
                elif any(
                    "endPort" in p and p["port"] <= ari_port["containerPort"] <= p["endPort"]
                    for p in rule["ports"]
                ):
                    pytest.fail(f"{values_name}: the RTP range covers the ARI port")
        assert all(set(source) == {"podSelector"} for source in admitted), values_name
        assert sorted(component_of(s["podSelector"]) or "" for s in admitted) == [
            "recording",
            "voicemail",
        ]
        for source in admitted:
            assert source["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE


def env_named(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_recording_consumers_reach_the_asterisk_pod_that_recorded(
    rendered: dict[str, list[Manifest]],
) -> None:
    """Routing names its pod in the events; voicemail and recording turn that name into
    the pod's ARI URL under the headless Service; Asterisk listens beyond loopback."""
    for values_name, objects in rendered.items():
        (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
        set_name = sts["metadata"]["name"]
        (headless,) = [
            o
            for o in objects
            if o["kind"] == "Service" and o["metadata"]["name"] == sts["spec"]["serviceName"]
        ]
        assert headless["spec"]["clusterIP"] == "None"
        assert {"name": "ari", "port": 8088, "targetPort": "ari", "protocol": "TCP"} in headless[
            "spec"
        ]["ports"]
        by_name = {c["name"]: env_named(c) for c in pod_spec(sts)["containers"]}
        assert by_name["asterisk"]["RINGWISE_ARI_BIND"]["value"] == "0.0.0.0"
        instance = by_name["routing"]["RINGWISE_ASTERISK_INSTANCE"]
        assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        # Routing itself stays on localhost.
        assert by_name["routing"]["RINGWISE_ARI_URL"]["value"] == "http://127.0.0.1:8088"
        domain = f"{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
        for service in ("voicemail", "recording"):
            (deployment,) = [
                o
                for o in objects
                if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(f"-{service}")
            ]
            env = env_named(pod_spec(deployment)["containers"][0])
            template = env["RINGWISE_ARI_URL_TEMPLATE"]["value"]
            # The kit's rule applied to a pod name gives that pod's DNS name.
            pod = f"{set_name}-1"
            assert ari_url_for("unused", template, pod) == f"http://{pod}.{domain}:8088"
            assert env["RINGWISE_ARI_URL"]["value"] == f"http://{domain}:8088"
            assert env["RINGWISE_ARI_USER"]["value"] == "ringwise"
            secret = env["RINGWISE_ARI_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert secret["key"] == "ari-password" and secret["optional"] is False, values_name


def voicemail_pod(objects: list[Manifest]) -> dict[str, Any]:
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-voicemail")
    ]
    return pod_spec(deployment)


def test_the_mailer_gets_tls_settings_and_auth_credentials_from_a_secret(
    rendered: dict[str, list[Manifest]],
) -> None:
    minimal = env_named(voicemail_pod(rendered["minimal"])["containers"][0])
    assert minimal["RINGWISE_SMTP_SECURITY"]["value"] == "starttls"
    assert minimal["RINGWISE_SMTP_VERIFY_TLS"]["value"] == "true"  # verification on by default
    assert "RINGWISE_SMTP_USERNAME" not in minimal and "RINGWISE_SMTP_CA_FILE" not in minimal

    # Production: STARTTLS, AUTH from its own Secret, the relay checked against a private CA.
    pod = voicemail_pod(rendered["production"])
    production = env_named(pod["containers"][0])
    assert production["RINGWISE_SMTP_SECURITY"]["value"] == "starttls"
    for name, key in (("USERNAME", "smtp-username"), ("PASSWORD", "smtp-password")):
        ref = production[f"RINGWISE_SMTP_{name}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "ringwise-prod-smtp", "key": key, "optional": False}
    ca_file = production["RINGWISE_SMTP_CA_FILE"]["value"]
    assert ca_file == "/etc/ringwise/smtp-ca/ca.crt"
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "smtp-ca"]
    assert ca_file.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "smtp-ca"]
    assert volume["configMap"] == {
        "name": "telco-internal-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }

    # Implicit TLS; AUTH credentials from the release's one Secret.
    tls = env_named(voicemail_pod(rendered["tls"])["containers"][0])
    assert tls["RINGWISE_SMTP_SECURITY"]["value"] == "tls"
    assert tls["RINGWISE_SMTP_PORT"]["value"] == "465"
    ref = tls["RINGWISE_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "ringwise-credentials"

    # Only voicemail sends mail.
    for values_name, _obj, container in containers(rendered):
        if container["name"] != "voicemail":
            names = [e["name"] for e in container.get("env", [])]
            assert not [n for n in names if n.startswith("RINGWISE_SMTP_")], values_name
