from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import pytest

from devtools import stack as local_stack
from processors import compiled
from router.settings import Settings, load
from tests.kafka_tools import ISSUED, delete_topics

pytest_plugins = ["tests.redis_cluster"]  # `nodes` and `cluster`: a real three-node Redis Cluster


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test old code: an extension built from an older source would run instead of it."""
    if (why := compiled.complaint()) is not None:
        pytest.exit(why, returncode=4)


@pytest.fixture(scope="session")
def stack() -> Settings:
    """Settings of the default local stack, started if it is not up and left running after.

    A service that cannot start fails the tests that need it; it is never a skip.
    """
    settings = load()
    local_stack.up(settings, ("kafka", "redis", "imap"))
    return settings


def _drop(prefixes: list[str]) -> None:
    """Delete the topics of `prefixes`; a failure is a warning, never a test's result."""
    if prefixes:
        try:
            asyncio.run(delete_topics(load(), prefixes))
        except Exception as e:  # noqa: BLE001 - tidying up must not turn a result into an error
            warnings.warn(f"test topics were left in Kafka: {e!r}", stacklevel=1)


@pytest.fixture(scope="module", autouse=True)
def _drop_module_topics() -> Iterator[None]:
    """Delete the topics a module's deployments made once the module is done.

    Kept to the session's end they piled up past the broker's open-file limit (12
    partitions a topic, a file each): Kafka shut down mid-run.
    """
    start = len(ISSUED)
    yield
    mine = ISSUED[start:]
    del ISSUED[start:]
    _drop(mine)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_topics() -> Iterator[None]:
    """Delete whatever topics are left of this session's deployments, once every test is done."""
    yield
    _drop(list(ISSUED))
