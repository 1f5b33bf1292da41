"""The brain's decision path, compiled to C by mypyc: which modules, and whether they run so.

The modules below are typed Python on the per-message path: the brain's decisions and its
stage, intake's identify, the key tags and batch calls (docs/decisions/0023). mypyc turns
each into an extension module beside its source; Python imports the extension first. A
module here must not define a msgspec Struct that is decoded or described as JSON schema:
compiled, a class keeps only the outer type of each annotation (`str | None` reads as
`type`), so decoding it fails. Those live in modules left as Python, beside the rules
that use them (`brain/slaclock.py`, `intake/binding.py`, `stores/history.py`).
"""

from __future__ import annotations

import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

__all__ = ["GROUP", "MODULES", "ROOT", "complaint", "enabled", "extensions", "loaded", "missing", "outdated",
           "sources", "stale", "strays"]

MODULES = (
    "processors.brain.acknowledge",
    "processors.brain.callback",
    "processors.brain.casefile",
    "processors.brain.classify",
    "processors.brain.handover",
    "processors.brain.lifecycle",
    "processors.brain.memo",
    "processors.brain.priority",
    "processors.brain.route",
    "processors.brain.sla",
    "processors.brain.stage",
    "processors.brain.sticky",
    "processors.brain.thread",
    "processors.intake.evidence",
    "processors.intake.identify",
    "processors.policy.calendar",
    "processors.policy.derived",
    "processors.policy.model",
    "processors.stores.bulk",
    "processors.stores.tags",
    "schemas.codec",
    "schemas.ids",
)
# the one shared library every compiled module's stub loads: processors/compiled__mypyc*.so
GROUP = "processors.compiled"
ROOT = Path(__file__).resolve().parent.parent


def enabled() -> bool:
    """Whether this checkout compiles (the default); SWITCHBOARD_COMPILE=0 keeps it pure Python."""
    return os.environ.get("SWITCHBOARD_COMPILE", "1") != "0"


def sources(root: Path = ROOT) -> list[Path]:
    """The source file of each compiled module, under `root`."""
    return [root.joinpath(*name.split(".")).with_suffix(".py") for name in MODULES]


def _built(source: Path) -> list[Path]:
    return [p for suffix in EXTENSION_SUFFIXES if (p := source.with_suffix(suffix)).exists()]


def missing(root: Path = ROOT) -> list[Path]:
    """Sources with no extension built: they run as Python."""
    return [source for source in sources(root) if not _built(source)]


def stale(root: Path = ROOT) -> list[Path]:
    """Sources changed since their extension was built: Python would run the old code."""
    return [source for source in sources(root)
            if (built := _built(source)) and min(p.stat().st_mtime for p in built) < source.stat().st_mtime]


def extensions(root: Path = ROOT) -> list[Path]:
    """Every extension module built in the compiled modules' packages (ours are all mypyc's)."""
    return sorted({p for package in {name.split(".")[0] for name in MODULES}
                   for suffix in EXTENSION_SUFFIXES for p in (root / package).rglob(f"*{suffix}")})


def strays(root: Path = ROOT) -> list[Path]:
    """Extensions of modules no longer compiled: left beside their sources, they would shadow them."""
    names = {*MODULES, f"{GROUP}__mypyc"}
    return [p for p in extensions(root) if _module_of(p, root) not in names]


def _module_of(extension: Path, root: Path) -> str:
    suffix = next(s for s in EXTENSION_SUFFIXES if extension.name.endswith(s))
    return ".".join(extension.relative_to(root).parts)[:-len(suffix)]


def outdated(root: Path = ROOT) -> list[Path]:
    """In a checkout, what makes its extensions differ from its sources: `make compile` fixes it.

    An installed wheel is built from the sources beside it (and has no pyproject.toml):
    nothing there is outdated. With SWITCHBOARD_COMPILE=0, any extension is.
    """
    if not (root / "pyproject.toml").exists():
        return []
    return stale(root) + strays(root) if enabled() else extensions(root)


def complaint(root: Path = ROOT) -> str | None:
    """Why a test or benchmark run here would measure old code, or None when it would not."""
    old = outdated(root)
    if not old:
        return None
    names = ", ".join(str(p.relative_to(root)) for p in old)
    return f"compiled modules do not match their sources ({names}): run `make compile`"


def loaded() -> list[str]:
    """The modules of MODULES that this process runs compiled."""
    suffixes = tuple(EXTENSION_SUFFIXES)
    return [name for name in MODULES
            if str(getattr(importlib.import_module(name), "__file__", "")).endswith(suffixes)]
