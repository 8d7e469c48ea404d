"""Which Asterisk holds a stored recording, and its ARI client.

Routing records on its own Asterisk and names that Asterisk in the events that hand the file
over (`asterisk_instance`: the StatefulSet pod name in Kubernetes, empty with one Asterisk).
Voicemail and recording fetch and delete the file there: with a URL template
(RINGWISE_ARI_URL_TEMPLATE, e.g. http://{instance}.rw-asterisk.telephony.svc.cluster.local:8088,
the pod's name under the StatefulSet's headless Service) each instance has its own ARI URL;
without one, or for an event naming no instance, it is the one Asterisk at RINGWISE_ARI_URL.
"""

from __future__ import annotations

import asyncio
import re

from ringwise_kit.ari.client import AriClient
from ringwise_kit.config import AriSettings

# A DNS label (RFC 1123), as Kubernetes pod names of a StatefulSet are: the name comes from an
# event, so anything else (dots, ports, "@", "/") is refused rather than put into a URL.
_INSTANCE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class UnknownInstance(ValueError):
    """The event names an Asterisk instance that cannot be a pod name."""


def is_instance_name(instance: str) -> bool:
    """ "" (the one Asterisk) or a name that can be a pod's."""
    return not instance or bool(_INSTANCE.match(instance))


def ari_url_for(default_url: str, template: str, instance: str) -> str:
    """The ARI base URL of the Asterisk called `instance` (rules in the module doc)."""
    if not instance:
        return default_url
    if not is_instance_name(instance):
        raise UnknownInstance(f"{instance!r} is not an Asterisk instance name (a DNS label)")
    if not template:
        return default_url
    return template.replace("{instance}", instance)


class AriInstances:
    """REST-only ARI clients, one per Asterisk base URL, opened on first use and kept: the
    instances are the Asterisk pods (a handful of ordinal names), so the set stays small."""

    def __init__(self, settings: AriSettings, *, request_timeout_s: float = 5.0) -> None:
        self._settings = settings
        self._request_timeout_s = request_timeout_s
        self._clients: dict[str, AriClient] = {}
        self._lock = asyncio.Lock()

    def url_for(self, instance: str) -> str:
        return ari_url_for(self._settings.ari_url, self._settings.ari_url_template, instance)

    async def client(self, instance: str = "") -> AriClient:
        """The client of that instance ("" = the default Asterisk at ari_url). Raises
        UnknownInstance for a name that cannot be one."""
        url = self.url_for(instance)
        client = self._clients.get(url)
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get(url)
            if client is None:
                settings = self._settings
                client = AriClient(
                    url,
                    settings.ari_user,
                    settings.ari_password.get_secret_value(),
                    settings.ari_app,
                    request_timeout_s=self._request_timeout_s,
                )
                # REST only: routing owns the Stasis app and its event WebSocket.
                await client.start(events=False)
                self._clients[url] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
