"""Directory service settings (RINGWISE_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from ringwise_kit.config import KitSettings, MongoSettings


class DirectorySettings(KitSettings, MongoSettings):
    service_name: str = "directory"
    http_port: int = 9102
    directory_db: str = "ringwise_directory"
    # JSON file with demo/test tenants, users and numbers, loaded (upserted) at start-up.
    directory_fixture: Path | None = None
