"""Recurring charges: monthly fees for services, users and numbers; number setup fees and the
number lifecycle (Reserved 20 days, Active, Awaiting deletion)."""
