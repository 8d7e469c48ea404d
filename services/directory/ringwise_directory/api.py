"""The directory's REST operations: every feature's router behind its api.yaml role rules."""

from __future__ import annotations

from ringwise_kit.api import ApiRouter

from ringwise_directory.auth import http as auth_http
from ringwise_directory.common.access import guarded_router, load_rules
from ringwise_directory.contacts import http as contacts_http
from ringwise_directory.devices import http as devices_http
from ringwise_directory.history import http as history_http
from ringwise_directory.numbers import http as numbers_http
from ringwise_directory.schedules import http as schedules_http
from ringwise_directory.stores import Stores
from ringwise_directory.teams import http as teams_http
from ringwise_directory.tenants import http as tenants_http
from ringwise_directory.users import http as users_http


def build_router(stores: Stores) -> ApiRouter:
    return guarded_router(
        [
            tenants_http.router(stores),
            users_http.router(stores),
            users_http.transfer_router(stores),
            auth_http.router(stores),
            numbers_http.router(stores),
            devices_http.router(stores),
            teams_http.router(stores),
            contacts_http.router(stores),
            schedules_http.router(stores),
            history_http.router(stores),
        ],
        load_rules(),
        tenant_exists=stores.tenants.exists,
    )
