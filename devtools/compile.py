"""Compile the brain's decision path in place (mypyc), when its sources changed: `make compile`.

Quiet and quick when every extension is newer than its source. SWITCHBOARD_COMPILE=0
removes the extensions instead, so the checkout runs as pure Python.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from processors import compiled

__all__ = ["main", "mypyc_extensions"]


def mypyc_extensions() -> list[Any]:
    """The extensions mypyc makes of `processors.compiled.MODULES` (setup.py builds them too)."""
    from mypyc.build import mypycify  # build tooling: imported only to build

    return list(mypycify([str(path.relative_to(compiled.ROOT)) for path in compiled.sources()],
                         opt_level="3", group_name=compiled.GROUP))


def _build_in_place() -> None:
    from setuptools import Distribution  # build tooling: imported only to build

    # no setup.py run: the project's metadata has nothing to do with building extensions
    os.chdir(compiled.ROOT)  # mypyc names modules by their paths from the project's root
    dist = Distribution({"name": "switchboard-compiled", "ext_modules": mypyc_extensions()})
    dist.verbose = False  # gcc's command lines: only a failure needs them
    build = dist.get_command_obj("build_ext")
    build.inplace = True
    dist.run_command("build_ext")


def _unbuilt() -> list[Path]:
    return compiled.stale() + compiled.missing()


def _remove_all() -> None:
    for path in compiled.extensions():
        path.unlink()


def main() -> int:
    """Bring the compiled modules up to date with their sources (or remove them); 0 when done."""
    if not compiled.enabled():
        _remove_all()
        print("compile: SWITCHBOARD_COMPILE=0: the brain runs as pure Python")
        return 0
    for path in compiled.strays():
        print(f"compile: removing {path.relative_to(compiled.ROOT)}: not a compiled module any more")
        path.unlink()
    changed = _unbuilt()
    if not changed:
        return 0
    print(f"compile: {len(changed)} of {len(compiled.MODULES)} modules changed: compiling all of them "
          "with mypyc (about a minute)", flush=True)
    # a fresh build directory: mypyc's C of a module dropped from the list must not link in
    shutil.rmtree(compiled.ROOT / "build", ignore_errors=True)
    try:
        _build_in_place()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure: mypyc reports type errors by SystemExit
        # a half-built set would shadow some sources with old code: none at all is honest
        _remove_all()
        print(f"compile: failed ({e!r}); removed every extension: the brain runs as pure Python",
              file=sys.stderr)
        return 1
    left = _unbuilt()
    if left:
        print(f"compile: still not built: {', '.join(str(p) for p in left)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
