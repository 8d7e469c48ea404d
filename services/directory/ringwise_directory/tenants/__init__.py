"""Tenants: the operator's customer companies."""
