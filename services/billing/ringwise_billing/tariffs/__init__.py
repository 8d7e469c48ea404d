"""Tariffs: storage of per-tenant tariff versions and their API operations."""
