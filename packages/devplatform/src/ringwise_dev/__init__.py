"""Ringwise local platform and test harness."""
