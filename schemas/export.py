"""JSON Schema export of every topic's event, for consumers in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.topics import ALL, TopicSpec

__all__ = ["EXPORT_DIR", "render", "write"]

EXPORT_DIR = Path(__file__).parent / "json"


def _document(spec: TopicSpec) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(spec.model)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = spec.name
    schema["description"] = f"{spec.model.__name__} on {spec.name}; key: {spec.key}"
    return schema


def render() -> dict[str, str]:
    """File name → JSON text for every topic's schema."""
    return {
        f"{spec.name}.json": json.dumps(_document(spec), indent=2, sort_keys=True) + "\n"
        for spec in ALL
    }


def write(directory: Path = EXPORT_DIR) -> list[Path]:
    """Write the schemas to `directory` and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
