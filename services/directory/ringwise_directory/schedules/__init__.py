"""Work schedules: weekdays and HH:MM ranges in an IANA time zone (they switch availability
in a later issue)."""
