"""Every feature's store, built once over one database (the service's app state)."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher

from ringwise_directory.auth.store import CredentialStore
from ringwise_directory.common.context import Directory
from ringwise_directory.contacts.store import ContactStore
from ringwise_directory.devices.store import DeviceStore
from ringwise_directory.numbers.store import NumberStore
from ringwise_directory.schedules.store import ScheduleStore
from ringwise_directory.teams.store import TeamStore
from ringwise_directory.tenants.store import TenantStore
from ringwise_directory.users.store import UserStore


@dataclass
class Stores:
    directory: Directory
    tenants: TenantStore
    numbers: NumberStore
    devices: DeviceStore
    credentials: CredentialStore
    users: UserStore
    teams: TeamStore
    contacts: ContactStore
    schedules: ScheduleStore

    @classmethod
    def build(cls, directory: Directory, hasher: PasswordHasher | None = None) -> Stores:
        numbers = NumberStore(directory)
        credentials = CredentialStore(directory, hasher)
        return cls(
            directory=directory,
            tenants=TenantStore(directory),
            numbers=numbers,
            devices=DeviceStore(directory, numbers),
            credentials=credentials,
            users=UserStore(directory, credentials),
            teams=TeamStore(directory),
            contacts=ContactStore(directory),
            schedules=ScheduleStore(directory),
        )

    async def ensure_indexes(self) -> None:
        await self.directory.history.ensure_indexes()
        for store in (
            self.tenants,
            self.numbers,
            self.devices,
            self.credentials,
            self.users,
            self.teams,
            self.contacts,
            self.schedules,
        ):
            await store.ensure_indexes()
