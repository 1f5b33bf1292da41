"""The Kubernetes manifests of deploy/k8s, read as kustomize would list them, for the checks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.paths import ROOT

K8S = ROOT / "deploy" / "k8s"
WORKLOADS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class Doc:
    """One object of a manifest file."""

    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@cache
def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


@cache
def docs() -> tuple[Doc, ...]:
    """Every object of every file the kustomization lists, in order."""
    found = []
    for name in kustomization()["resources"]:
        path = K8S / name
        found += [Doc(path, body) for body in yaml.safe_load_all(path.read_text()) if body]
    return tuple(found)


def of_kind(kind: str) -> list[Doc]:
    return [d for d in docs() if d.kind == kind]


def one(kind: str, name: str) -> Doc:
    (found,) = [d for d in docs() if d.kind == kind and d.name == name]
    return found


def workloads() -> list[Doc]:
    return [d for d in docs() if d.kind in WORKLOADS]


def pod(doc: Doc) -> dict[str, Any]:
    return dict(doc.body["spec"]["template"]["spec"])


def container(doc: Doc) -> dict[str, Any]:
    (only,) = pod(doc)["containers"]
    return dict(only)


def environment(doc: Doc) -> dict[str, str]:
    """The SB_* variables a workload's container gets: its ConfigMaps and Secrets, then its env."""
    env: dict[str, str] = {}
    for source in container(doc).get("envFrom", ()):
        if "configMapRef" in source:
            env |= one("ConfigMap", source["configMapRef"]["name"]).body["data"]
        else:
            env |= one("Secret", source["secretRef"]["name"]).body["stringData"]
    for item in container(doc).get("env", ()):
        env[item["name"]] = item["value"]
    return env
