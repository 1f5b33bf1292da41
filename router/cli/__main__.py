"""`python -m router.cli`: the `switchboard` command."""

from __future__ import annotations

import sys

from router.cli.commands import main

sys.exit(main())
