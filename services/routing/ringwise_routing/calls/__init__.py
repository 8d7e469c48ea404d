"""Inbound calls: from StasisStart to the CDR (policy, ARI executor, events)."""
