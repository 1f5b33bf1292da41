"""Build: with SWITCHBOARD_COMPILE=1, the modules of `processors.compiled` are compiled to C by mypyc.

Without it the package builds as pure Python (the same behaviour, slower). Compiling
type-checks the whole project, so it needs the runtime dependencies and mypy installed
beside it: `pip install --no-build-isolation` (deploy/Dockerfile does). A checkout compiles
in place with `make compile` (devtools/compile.py), which `make setup` runs.
"""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtools.compile import mypyc_extensions  # the one list, shared with `make compile`

setup(ext_modules=mypyc_extensions() if os.environ.get("SWITCHBOARD_COMPILE") == "1" else [])
