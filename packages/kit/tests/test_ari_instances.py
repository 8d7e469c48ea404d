"""Which ARI URL a stored recording is fetched from (ringwise_kit.ari.instances): pure rules,
no Asterisk needed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from ringwise_kit.ari import AriInstances, UnknownInstance, ari_url_for, is_instance_name
from ringwise_kit.config import AriSettings

LOCAL = "http://127.0.0.1:8088"
TEMPLATE = "http://{instance}.rw-ringwise-asterisk.telephony.svc.cluster.local:8088"


def test_one_asterisk_everything_is_at_the_default_url() -> None:
    # Locally: no template, and routing names no instance.
    assert ari_url_for(LOCAL, "", "") == LOCAL
    # A named instance without a template is still the one Asterisk (a single-host install).
    assert ari_url_for(LOCAL, "", "asterisk-0") == LOCAL


def test_a_named_pod_resolves_through_the_headless_service_template() -> None:
    url = ari_url_for(LOCAL, TEMPLATE, "rw-ringwise-asterisk-1")
    assert (
        url == "http://rw-ringwise-asterisk-1.rw-ringwise-asterisk.telephony.svc.cluster.local:8088"
    )
    assert ari_url_for(LOCAL, TEMPLATE, "rw-ringwise-asterisk-12").startswith(
        "http://rw-ringwise-asterisk-12."
    )


def test_an_event_naming_no_instance_uses_the_default_url() -> None:
    """Events published before the upgrade (or by a routing without the setting)."""
    assert ari_url_for(LOCAL, TEMPLATE, "") == LOCAL


@pytest.mark.parametrize(
    "instance",
    [
        "evil.example.com",  # another host
        "pod:80",
        "pod/../x",
        "user@host",
        "Asterisk-0",  # pod names are lower case
        "-asterisk",
        "asterisk-",
        "a" * 64,  # longer than a DNS label
        "pod 0",
    ],
)
def test_names_that_cannot_be_a_pod_are_refused(instance: str) -> None:
    assert not is_instance_name(instance)
    with pytest.raises(UnknownInstance, match="not an Asterisk instance name"):
        ari_url_for(LOCAL, TEMPLATE, instance)
    # Refused even without a template: the name is wrong whatever the deployment.
    with pytest.raises(UnknownInstance):
        ari_url_for(LOCAL, "", instance)


def test_instance_names_that_are_pod_names_are_accepted() -> None:
    for name in ("", "a", "asterisk-0", "rw-ringwise-asterisk-31", "a" * 63):
        assert is_instance_name(name), name


@pytest.mark.parametrize(
    "template",
    [
        "http://asterisk:8088",  # no placeholder: every pod would be the same URL
        "http://{instance}.{instance}:8088",
        "{instance}:8088",  # no scheme
        "ftp://{instance}:8088",
    ],
)
def test_the_template_setting_is_checked_at_start(
    template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGWISE_ARI_URL_TEMPLATE", template)
    with pytest.raises(ValidationError, match="exactly one \\{instance\\} placeholder"):
        AriSettings()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWISE_ARI_URL_TEMPLATE", TEMPLATE)
    monkeypatch.setenv("RINGWISE_ASTERISK_INSTANCE", "rw-ringwise-asterisk-0")
    settings = AriSettings()
    assert settings.ari_url_template == TEMPLATE
    assert settings.asterisk_instance == "rw-ringwise-asterisk-0"
    assert (
        AriInstances(settings)
        .url_for("rw-ringwise-asterisk-3")
        .startswith("http://rw-ringwise-asterisk-3.rw-ringwise-asterisk.")
    )


async def test_one_client_per_asterisk_and_all_closed() -> None:
    instances = AriInstances(
        AriSettings(ari_url=LOCAL, ari_url_template=TEMPLATE, ari_password=SecretStr("x"))
    )
    first = await instances.client("rw-ringwise-asterisk-0")
    assert first is await instances.client("rw-ringwise-asterisk-0")
    other = await instances.client("rw-ringwise-asterisk-1")
    default = await instances.client()
    assert first is not other and default not in (first, other)
    assert default.base_url == LOCAL
    assert other.base_url.startswith("http://rw-ringwise-asterisk-1.")
    await instances.close()
    with pytest.raises(RuntimeError, match="closed"):
        await first.request("GET", "/asterisk/info")
