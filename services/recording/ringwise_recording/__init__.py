"""Ringwise recording service."""
