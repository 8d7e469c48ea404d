"""Benchmarks that drive the real local platform (not part of the test suite)."""
