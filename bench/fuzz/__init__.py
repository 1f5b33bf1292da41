"""Bounded coverage-guided fuzzing of every parser of outside input (atheris); see __main__."""

from __future__ import annotations

__all__: list[str] = []
