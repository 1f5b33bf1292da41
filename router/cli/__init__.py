"""The `switchboard` command line: one module per command that has more than a few lines."""

from __future__ import annotations

from router.cli.commands import main

__all__ = ["main"]
