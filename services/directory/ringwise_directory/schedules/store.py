"""Schedules in MongoDB."""

from __future__ import annotations

from ringwise_directory.common.context import Directory
from ringwise_directory.common.crud import TenantRecords


class ScheduleStore(TenantRecords):
    def __init__(self, directory: Directory) -> None:
        super().__init__(directory, "schedules", "schedule_id", "s")
