"""Ringwise gateway: the one public REST API."""
