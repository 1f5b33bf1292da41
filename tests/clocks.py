"""Run the suite under faked clocks: a weekday night and a weekend, in other timezones.

No test may depend on the hour, the weekday or the machine's timezone. This runs pytest
under libfaketime (Debian's `faketime`) shifted to the next such moment of the example
policy's team calendar (Europe/Berlin), with TZ set elsewhere, every process the tests
start inheriting the same shift. The local Kafka accepts record times up to 8 days ahead
(deploy/local/server.properties.in), so shifts stay within a week. Servers the tests
start themselves run on the real clock (`real_clock_env`), as the local stack does.

Known gap: e2e tests fail under it. Dovecot stamps mail with its real clock (it moves a
future APPEND date back to its own now), so a faked router counts the mail on another
day; and the outage tests run out their deadlines. `make test`, CI's, fakes nothing.

    python -m tests.clocks [pytest args]     # `make test-clocks`
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

TEAM = ZoneInfo("Europe/Berlin")
# (name, weekday Mon=0, local hour and minute, machine timezone); the night starts just past
# midnight, so a story told around the real present crosses the team's day edge
MOMENTS = (("weekday night", 1, (0, 5), "Pacific/Kiritimati"), ("weekend", 6, (12, 0), "America/Los_Angeles"))


def real_clock_env() -> dict[str, str]:
    """This environment without libfaketime, for servers the tests start: like the local
    stack they run on the machine's clock (only the clients' clock is faked; Redis breaks under it)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}


def midday(zone: ZoneInfo = TEAM) -> datetime:
    """Noon of the present day in `zone`: near now, as Kafka keeps records by time, far from a day's edge."""
    return datetime.now(zone).replace(hour=12, minute=0, second=0, microsecond=0).astimezone(UTC)


def next_moment(now: datetime, weekday: int, at: tuple[int, int]) -> datetime:
    """The next time it is `weekday` at `at` (hour, minute) on the team's calendar, after `now`."""
    local = now.astimezone(TEAM).replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    local += timedelta(days=(weekday - local.weekday()) % 7)
    return local if local > now else local + timedelta(days=7)


def main(args: list[str]) -> int:
    """Run pytest once per moment; non-zero when any run fails."""
    failed = []
    for name, weekday, clock, tz in MOMENTS:
        now = datetime.now(UTC)
        at = next_moment(now, weekday, clock)
        shift = int((at - now).total_seconds())
        print(f"== {name}: {at:%a %d %b %H:%M %Z} (+{shift}s), TZ={tz}", flush=True)
        env = {**os.environ, "TZ": tz}
        command = ["faketime", "-f", f"+{shift}", sys.executable, "-m", "pytest", *args]
        run = subprocess.run(command, check=False, env=env)
        if run.returncode != 0:
            failed.append(name)
    print("clocks:", "all passed" if not failed else f"failed under {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
