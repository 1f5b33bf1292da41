"""Where tests find the repository's files, wherever the test module sits in the tree."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLE_POLICY = ROOT / "deploy" / "policy.example.yaml"
