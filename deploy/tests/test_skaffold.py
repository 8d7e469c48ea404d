"""skaffold.yaml (skaffold itself is not obtainable here): well-formed, every artifact's context
and Dockerfile exist, every chart image is built, the chart and values files it names exist,
and its values (with the dev profile's) render a valid release."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploykit import CHART, DEPLOYED_SERVICES, REPO, Render, deep_merge, load_values

SKAFFOLD = REPO / "skaffold.yaml"
# The image references skaffold hands to the chart (IMAGE_FULLY_QUALIFIED_<name>).
TEMPLATE_VAR = re.compile(r"^\{\{\.IMAGE_FULLY_QUALIFIED_([A-Za-z0-9_]+)\}\}$")
CHART_COMPONENTS = {*DEPLOYED_SERVICES, "routing", "asterisk", "sipEdge"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(SKAFFOLD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def skaffold_var(image: str) -> str:
    """How skaffold names an image in template variables: non-alphanumerics become _."""
    return re.sub(r"[^A-Za-z0-9]", "_", image)


def test_is_a_skaffold_v4_config(config: dict[str, Any]) -> None:
    assert re.fullmatch(r"skaffold/v4beta\d+", config["apiVersion"])
    assert config["kind"] == "Config"
    assert set(config) <= {
        "apiVersion",
        "kind",
        "metadata",
        "build",
        "deploy",
        "profiles",
        "manifests",
        "test",
        "portForward",
        "requires",
        "verify",
    }


def test_every_artifact_has_its_context_and_dockerfile(config: dict[str, Any]) -> None:
    artifacts = config["build"]["artifacts"]
    assert len({a["image"] for a in artifacts}) == len(artifacts)
    for artifact in artifacts:
        context = REPO / artifact["context"]
        assert context.is_dir(), artifact
        dockerfile = context / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), artifact
        assert dockerfile.resolve().is_relative_to(REPO), artifact
    # The service images need the workspace lock: their context is the repository root.
    for artifact in artifacts:
        if artifact["docker"]["dockerfile"].startswith("services/"):
            assert artifact["context"] == "."


def test_every_chart_image_is_built_and_handed_to_the_chart(config: dict[str, Any]) -> None:
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == CHART
    built = {skaffold_var(a["image"]) for a in config["build"]["artifacts"]}
    handed: dict[str, str] = {}
    for key, template in release["setValueTemplates"].items():
        prefix, component = key.split(".", 1)
        assert prefix == "imageOverrides", key
        match = TEMPLATE_VAR.match(template)
        assert match, template
        handed[component] = match.group(1)
    assert set(handed) == CHART_COMPONENTS
    assert set(handed.values()) == built
    chart_values = load_values(CHART / "values.yaml")
    assert "imageOverrides" in chart_values


def test_values_files_exist_in_every_profile(config: dict[str, Any]) -> None:
    (release,) = config["deploy"]["helm"]["releases"]
    files = list(release["valuesFiles"])
    profiles = {p["name"]: p for p in config["profiles"]}
    assert "dev" in profiles
    for patch in profiles["dev"]["patches"]:
        assert patch["op"] in {"add", "replace", "remove"}
        if patch["path"] == "/deploy/helm/releases/0/valuesFiles":
            files += patch["value"]
    for path in files:
        assert (REPO / path).is_file(), path


def test_dev_profile_values_render_with_skaffold_image_references(
    config: dict[str, Any], render: Render
) -> None:
    (profile,) = [p for p in config["profiles"] if p["name"] == "dev"]
    (patch,) = [p for p in profile["patches"] if p["path"].endswith("/valuesFiles")]
    values: dict[str, Any] = {}
    for path in patch["value"]:
        values = deep_merge(values, load_values(REPO / path))
    digest = "sha256:" + "0" * 64
    values["imageOverrides"] = {
        c: f"localhost:5000/ringwise/{c.lower()}:dev-1a2b3c@{digest}" for c in CHART_COMPONENTS
    }
    objects = render(values)
    images = {
        c["image"]
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"}
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == set(values["imageOverrides"].values())
    assert not any(o["kind"] == "NetworkPolicy" for o in objects)


def test_skaffold_names_no_file_outside_the_repository() -> None:
    for line in SKAFFOLD.read_text().splitlines():
        for path in re.findall(r"(?:dockerfile|chartPath|context):\s*([^\s,}]+)", line):
            assert not Path(path).is_absolute() and ".." not in Path(path).parts, line
