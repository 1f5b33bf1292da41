"""The Kafka ACLs and the Redis ACL user docs/operators.md gives are the ones the security
test grants and proves sufficient (tests/e2e/test_secure_stack.py), word for word."""

from __future__ import annotations

import re
import shlex

from tests.paths import ROOT
from tests.secure_services import KAFKA_USER, REDIS_USER, documented_acls, redis_acl

GUIDE = (ROOT / "docs" / "operators.md").read_text()
TOPIC, GROUP = 2, 3


def _commands(tool: str) -> list[list[str]]:
    """Each shell command of the guide that runs `tool`, its continuation lines joined."""
    joined = GUIDE.replace("\\\n", " ")
    return [shlex.split(line.partition("#")[0]) for line in joined.splitlines()
            if line.startswith(tool)]


def test_the_kafka_acls_are_the_tested_ones() -> None:
    granted = set()
    commands = _commands("kafka-acls.sh")
    assert len(commands) == 2
    for words in commands:
        assert words[words.index("--allow-principal") + 1] == f"User:{KAFKA_USER}"
        assert words[words.index("--resource-pattern-type") + 1] == "prefixed"
        values = {flag: [words[i + 1] for i, w in enumerate(words) if w == flag]
                  for flag in ("--operation", "--topic", "--group")}
        for flag, kind in (("--topic", TOPIC), ("--group", GROUP)):
            granted |= {(kind, name, op) for name in values[flag] for op in values["--operation"]}
    assert granted == set(documented_acls("", "switchboard"))


def test_the_redis_acl_is_the_tested_one() -> None:
    line = re.search(rf"^ACL SETUSER {REDIS_USER} on >PASSWORD (.+)$", GUIDE, re.M)
    assert line, "the guide gives no ACL SETUSER line for the Switchboard user"
    assert line[1].split() == redis_acl("")
    assert re.search(r"^ACL SETUSER default off$", GUIDE, re.M)
