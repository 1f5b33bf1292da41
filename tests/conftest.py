from __future__ import annotations

import pytest

from router import stack as local_stack
from router.settings import Settings, load


@pytest.fixture(scope="session")
def stack() -> Settings:
    """Settings of the default local stack, started if it is not up and left running after.

    A service that cannot start fails the tests that need it; it is never a skip.
    """
    settings = load()
    local_stack.up(settings, ("kafka", "redis", "imap"))
    return settings
