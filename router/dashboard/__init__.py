"""The live dashboard's read model: topic events and Redis facts folded into one snapshot."""

from __future__ import annotations

__all__: list[str] = []
