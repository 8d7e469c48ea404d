"""Every feature's store, built once over one database (the service's app state)."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher

from ringwise_directory.auth.store import CredentialStore
from ringwise_directory.common.context import Directory
from ringwise_directory.common.extensions import ExtensionClaims
from ringwise_directory.contacts.store import ContactStore
from ringwise_directory.devices.store import DeviceStore
from ringwise_directory.numbers.store import NumberStore
from ringwise_directory.resolving import Resolver
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
    extensions: ExtensionClaims
    users: UserStore
    teams: TeamStore
    contacts: ContactStore
    schedules: ScheduleStore
    resolver: Resolver

    @classmethod
    def build(cls, directory: Directory, hasher: PasswordHasher | None = None) -> Stores:
        numbers = NumberStore(directory)
        credentials = CredentialStore(directory, hasher)
        extensions = ExtensionClaims(directory)
        return cls(
            directory=directory,
            tenants=TenantStore(directory),
            numbers=numbers,
            devices=DeviceStore(directory, numbers),
            credentials=credentials,
            extensions=extensions,
            users=UserStore(directory, credentials, extensions),
            teams=TeamStore(directory, extensions),
            contacts=ContactStore(directory),
            schedules=ScheduleStore(directory),
            resolver=Resolver(directory.db),
        )

    async def ensure_indexes(self) -> None:
        """Indexes, plus the upgrade older data needs: the first fixture-only model had
        tenants and users without version, status, role or language."""
        db = self.directory.db
        defaults = {
            db.tenants: {"version": 1, "status": "active", "language": "en"},
            db.users: {"version": 1, "status": "active", "role": "user", "language": "en"},
        }
        for collection, values in defaults.items():
            for name, value in values.items():
                await collection.update_many({name: {"$exists": False}}, {"$set": {name: value}})
        # Number versions only grow: the counter starts above any version already stored.
        highest = (
            await db.numbers.find({}, {"version": 1}).sort([("version", -1)]).limit(1).to_list()
        )
        if highest and highest[0].get("version"):
            await db.counters.update_one(
                {"_id": "version"}, {"$max": {"value": int(highest[0]["version"])}}, upsert=True
            )
        await self.directory.history.ensure_indexes()
        for store in (
            self.tenants,
            self.numbers,
            self.devices,
            self.credentials,
            self.extensions,
            self.users,
            self.teams,
            self.contacts,
            self.schedules,
        ):
            await store.ensure_indexes()
