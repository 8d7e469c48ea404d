"""Ringwise billing service."""
