"""The policy in force: loaded at start, reloaded when the file changes, never broken.

A bad edit is refused with its reason (file, line, key) while the policy already
running keeps running; the refusal is logged and counted, so an operator sees it.
Reading and checking are bounded (`processors.policy.load` and `.compose`), so no edit,
however hostile, can stop or stall the workers that reload it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from prometheus_client import Counter, Gauge

from processors.policy.load import parse_policy, read_policy
from processors.policy.model import Policy, Vocabulary
from router.vocabulary import vocabulary
from schemas.errors import ConfigError

__all__ = ["PolicyHolder"]

log = logging.getLogger(__name__)
RELOADS = Counter("sb_policy_reloads_total", "Policy file reloads", ["result"])
LOADED_AT = Gauge("sb_policy_loaded_timestamp_seconds", "When the policy in force was loaded")


class PolicyHolder:
    """Owns the current Policy; `current` is what every decision uses right now.

    The constructor only remembers the path: `load()` reads the file the first time.
    """

    def __init__(self, path: Path, names: Vocabulary | None = None) -> None:
        self.path = path
        # the registries, with who this deployment's channels reach; all of them when not given
        self._names = names or vocabulary()
        self._digest = ""  # of the text in force
        self._seen = ""  # of the text checked last: a refused file is not checked again until it changes
        self._refused: str | None = None  # the last refusal, so it is reported once
        self._current: Policy | None = None

    @property
    def current(self) -> Policy:
        """The policy in force; only after `load()`."""
        if self._current is None:
            raise RuntimeError("PolicyHolder.load() was not called: no policy is in force yet")
        return self._current

    def load(self) -> Policy:
        """Read and check the file the first time; a bad file raises the ConfigError that stops the start."""
        text, digest = self._read()
        self._current, self._digest, self._seen = self._parse(text), digest, digest
        LOADED_AT.set_to_current_time()
        return self._current

    def reload_if_changed(self) -> bool:
        """Load the file again if its content changed; True when a new policy took effect."""
        try:
            text, digest = self._read()
            if digest == self._seen:
                return False
            self._seen = digest
            if digest == self._digest:  # back to the text in force after a refused edit
                self._refused = None
                return False
            policy = self._parse(text)
        except ConfigError as e:
            if self._refused != e.reason:
                log.error("policy change refused; the previous policy stays in force",
                          extra={"policy": str(self.path), "reason": e.reason})
                RELOADS.labels("refused").inc()
                self._refused = e.reason
            return False
        self._current, self._digest, self._refused = policy, digest, None
        LOADED_AT.set_to_current_time()
        RELOADS.labels("applied").inc()
        log.info("policy reloaded", extra={"policy": str(self.path)})
        return True

    def _read(self) -> tuple[str, str]:
        text = read_policy(self.path)
        return text, hashlib.sha256(text.encode()).hexdigest()

    def _parse(self, text: str) -> Policy:
        try:
            return parse_policy(text, str(self.path), self._names)
        except ConfigError:
            raise
        except Exception as e:  # a checker's own bug refuses the edit, it never stops the workers
            raise ConfigError(f"the policy could not be checked ({type(e).__name__}: {e})",
                              str(self.path)) from e
