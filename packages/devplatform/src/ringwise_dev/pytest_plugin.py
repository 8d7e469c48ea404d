"""Pytest fixtures for Ringwise's real-component tests."""
