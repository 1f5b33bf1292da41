"""Insights for the business: what a window of the topics says, as a digest (sb.insights.v1)."""

from __future__ import annotations

__all__: list[str] = []
