"""The deployment checks' fixtures are defined (and type-checked) in deploykit.py; mypy cannot
hold two top-level modules named conftest (tests/e2e has one), so this file only re-exports."""

from deploykit import ci_values, helm_bin, kamailio_root, render, rendered

__all__ = ["ci_values", "helm_bin", "kamailio_root", "render", "rendered"]
