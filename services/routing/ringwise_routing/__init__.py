"""Ringwise routing service."""
