"""Ringwise directory service."""
