"""The policy in force: loaded at start, reloaded when the file changes, never broken.

A bad edit is refused with its reason (file, line, key) while the policy already
running keeps running; the refusal is logged and counted, so an operator sees it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from prometheus_client import Counter, Gauge

from processors.policy.load import parse_policy
from processors.policy.model import Policy
from router.vocabulary import vocabulary
from schemas.errors import ConfigError

__all__ = ["PolicyHolder"]

log = logging.getLogger(__name__)
RELOADS = Counter("sb_policy_reloads_total", "Policy file reloads", ["result"])
LOADED_AT = Gauge("sb_policy_loaded_timestamp_seconds", "When the policy in force was loaded")


class PolicyHolder:
    """Owns the current Policy; `current` is what every decision uses right now."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digest = ""
        self._refused: str | None = None  # the last refusal, so it is reported once
        self.current: Policy = self._load_first()

    def _read(self) -> tuple[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the policy file: {e}", str(self.path)) from e
        return text, hashlib.sha256(text.encode()).hexdigest()

    def _load_first(self) -> Policy:
        text, digest = self._read()
        policy = parse_policy(text, str(self.path), vocabulary())  # a bad policy at start stops the start
        self._digest = digest
        LOADED_AT.set_to_current_time()
        return policy

    def reload_if_changed(self) -> bool:
        """Load the file again if its content changed; True when a new policy took effect."""
        try:
            text, digest = self._read()
            if digest == self._digest:
                return False
            policy = parse_policy(text, str(self.path), vocabulary())
        except ConfigError as e:
            if self._refused != e.reason:
                log.error("policy change refused; the previous policy stays in force",
                          extra={"policy": str(self.path), "reason": e.reason})
                RELOADS.labels("refused").inc()
                self._refused = e.reason
            return False
        self.current, self._digest, self._refused = policy, digest, None
        LOADED_AT.set_to_current_time()
        RELOADS.labels("applied").inc()
        log.info("policy reloaded", extra={"policy": str(self.path)})
        return True
