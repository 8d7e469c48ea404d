"""Recording tests share recording_helpers (pytest runs with --import-mode=importlib, which
does not put test folders on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
