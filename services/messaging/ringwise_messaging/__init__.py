"""Ringwise messaging service."""
