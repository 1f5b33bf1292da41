"""A simulated support day on the real stack, and the scorecard of what it prevented (issue #16)."""

from __future__ import annotations

__all__: list[str] = []
