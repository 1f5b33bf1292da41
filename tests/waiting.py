"""How tests wait: on a condition, with a deadline, re-checking every POLL_SECONDS.

No test sleeps for a fixed time to let something happen; every pause below is the
interval between two checks of a condition that has its own deadline.
"""

from __future__ import annotations

POLL_SECONDS = 0.05
