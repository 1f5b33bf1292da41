"""X's weighted length against twitter-text's own conformance cases (v3: emoji count once).

The file's plain `tweets` section is the 140-character era's and is not today's rule.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from connectors.twitter.length import fits, has_url, weighted_length
from tests.paths import FIXTURES

CASES = yaml.safe_load((FIXTURES / "x" / "twitter-text" / "validate.yml").read_text())["tests"]
COUNTED = [*CASES["WeightedTweetsWithDiscountedEmojiCounterTest"],
           *CASES["UnicodeDirectionalMarkerCounterTest"]]


@pytest.mark.parametrize("case", COUNTED, ids=[c["description"] for c in COUNTED])
def test_weighted_length_matches_twitter_text(case: dict[str, Any]) -> None:
    assert weighted_length(case["text"]) == case["expected"]["weightedLength"]
    assert fits(case["text"]) is case["expected"]["valid"]


def test_links_are_seen() -> None:
    assert has_url("see https://example.com/help") and has_url("see example.com")
    assert not has_url("no link here")

