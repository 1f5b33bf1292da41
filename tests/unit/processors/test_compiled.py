"""The compiled decision path: built when it should be, and old builds never run unnoticed."""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import processors.metrics  # noqa: F401 - declares the gauge
from processors import compiled

SUFFIX = EXTENSION_SUFFIXES[0]


def test_every_listed_module_runs_compiled_unless_switched_off() -> None:
    # `make setup` compiles them; a build that silently fell back to Python fails here
    expected = list(compiled.MODULES) if compiled.enabled() else []
    assert compiled.loaded() == expected, "run `make compile`"


def _tree(root: Path) -> list[Path]:
    for source in compiled.sources(root):
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
    return compiled.sources(root)


def _built(source: Path, mtime: float) -> Path:
    extension = source.with_suffix(SUFFIX)
    extension.write_bytes(b"")
    os.utime(extension, (mtime, mtime))
    return extension


def test_a_source_edited_after_its_build_is_stale_and_one_never_built_is_missing(tmp_path: Path) -> None:
    sources = _tree(tmp_path)
    for source in sources:
        os.utime(source, (1_000, 1_000))
        _built(source, 2_000)
    assert compiled.stale(tmp_path) == [] and compiled.missing(tmp_path) == []
    os.utime(sources[3], (3_000, 3_000))  # edited after the build
    sources[5].with_suffix(SUFFIX).unlink()
    assert compiled.stale(tmp_path) == [sources[3]]
    assert compiled.missing(tmp_path) == [sources[5]]


def test_an_extension_of_a_module_no_longer_listed_is_a_stray(tmp_path: Path) -> None:
    _tree(tmp_path)
    shared = tmp_path.joinpath(*compiled.GROUP.split(".")).parent / f"compiled__mypyc{SUFFIX}"
    shared.write_bytes(b"")
    dropped = tmp_path / "processors" / "brain" / f"retired{SUFFIX}"
    dropped.write_bytes(b"")
    assert compiled.strays(tmp_path) == [dropped]
    assert set(compiled.extensions(tmp_path)) == {shared, dropped}


def test_metrics_say_how_many_modules_run_compiled() -> None:
    assert REGISTRY.get_sample_value("sb_compiled_modules") == len(compiled.loaded())


def test_a_checkout_complains_of_old_extensions_and_an_installed_wheel_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_COMPILE", "1")
    sources = _tree(tmp_path)
    for source in sources:
        os.utime(source, (3_000, 3_000))
        _built(source, 2_000)  # every source edited since its build
    assert compiled.outdated(tmp_path) == []  # no pyproject.toml: an installed wheel
    assert compiled.complaint(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("")
    assert compiled.outdated(tmp_path) == sources
    why = compiled.complaint(tmp_path)
    assert why is not None and "processors/brain/classify.py" in why and "make compile" in why
    monkeypatch.setenv("SWITCHBOARD_COMPILE", "0")  # pure Python: any extension is one too many
    assert compiled.outdated(tmp_path) == [s.with_suffix(SUFFIX) for s in sorted(sources)]
