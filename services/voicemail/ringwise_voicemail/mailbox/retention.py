"""Retention: which messages the daily job deletes (pure; the job passes the clock in).

Unsaved messages go after the tenant's retention (30 days unless configured); saved ones after
the saved retention when the tenant sets one; archived ones are kept. A message is deleted
only once it is strictly older than its limit: never early, and on the first run after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

DEFAULT_UNSAVED_DAYS = 30


class Folder(Enum):
    NEW = "new"
    SAVED = "saved"
    ARCHIVED = "archived"


@dataclass(frozen=True)
class RetentionPolicy:
    unsaved_days: int = DEFAULT_UNSAVED_DAYS
    # None: saved messages are kept until the user deletes them.
    saved_days: int | None = None

    def __post_init__(self) -> None:
        if self.unsaved_days < 1:
            raise ValueError("unsaved_days must be at least 1")
        if self.saved_days is not None and self.saved_days < 1:
            raise ValueError("saved_days must be at least 1 (or None to keep)")

    def expires_at(self, folder: Folder, received_at: datetime) -> datetime | None:
        if folder is Folder.ARCHIVED:
            return None
        if folder is Folder.SAVED:
            if self.saved_days is None:
                return None
            return received_at + timedelta(days=self.saved_days)
        return received_at + timedelta(days=self.unsaved_days)

    def is_due(self, folder: Folder, received_at: datetime, now: datetime) -> bool:
        expiry = self.expires_at(folder, received_at)
        return expiry is not None and now >= expiry

    def unsaved_cutoff(self, now: datetime) -> datetime:
        """Messages in NEW received before this are due (a store query bound)."""
        return now - timedelta(days=self.unsaved_days)

    def saved_cutoff(self, now: datetime) -> datetime | None:
        if self.saved_days is None:
            return None
        return now - timedelta(days=self.saved_days)
