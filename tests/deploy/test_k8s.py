"""deploy/k8s checked offline: Kubernetes' own schemas, then what the schemas cannot know.

Every variable the manifests set is a setting Switchboard reads, the ports and probe paths
are the router's, the policy passes `switchboard policy check`, pods run unprivileged on a
read-only root with the places the process writes mounted, the grace period outlasts the
process's own stop deadline, and the autoscalers read a metric the workers export for the
topics their stages consume, never more pods than partitions.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from connectors.email.settings import EmailSettings
from connectors.registry import sections
from router.app import STAGE_TOPICS
from router.cli.commands import main as switchboard
from router.http.server import build_app
from router.service import STOP_DEADLINE_SECONDS
from router.settings import Settings, load
from schemas.errors import ConfigError
from tests.deploy.manifests import (
    K8S,
    Doc,
    container,
    docs,
    environment,
    kustomization,
    of_kind,
    one,
    pod,
    workloads,
)
from tests.deploy.metric_names import exposed
from tests.paths import ROOT

# the oldest Kubernetes we support (HPA v2, PDB unhealthyPodEvictionPolicy) and the newest schemas
KUBERNETES = ("1.30.0", kubernetes_validate.latest_version())
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def _policy_secret_envs() -> set[str]:
    policy = yaml.safe_load(one("ConfigMap", "switchboard-policy").body["data"]["policy.yaml"])
    return {d["secret_env"] for d in policy.get("destinations", {}).values() if "secret_env" in d}


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_is_valid_for_kubernetes(version: str) -> None:
    assert len(docs()) >= 10
    for doc in docs():
        kubernetes_validate.validate(doc.body, version, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    body = copy.deepcopy(of_kind("Deployment")[0].body)
    body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(body, KUBERNETES[0], strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert {d.body["metadata"]["namespace"] for d in docs() if d.kind != "Namespace"} == {"switchboard"}


def test_every_variable_set_is_a_setting() -> None:
    fields = {f"SB_{name.upper()}" for name in Settings.model_fields}
    section_vars = {f"SB_{name.upper()}" for name in sections()}
    secrets = _policy_secret_envs()
    for doc in workloads():
        for variable in environment(doc):
            known = (variable in fields or variable in secrets
                     or variable.split("__")[0] in section_vars)
            assert known, f"{doc.name}: {variable} is no setting of router/settings.py or the registry"
    assert secrets <= set(environment(one("Deployment", "switchboard-route")))


@pytest.mark.parametrize("name", ["switchboard-edge-support", "switchboard-api", "switchboard-route",
                                  "switchboard-send"])
def test_each_workload_starts_from_its_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (doc,) = [d for d in workloads() if d.name == name]
    for variable in [v for v in os.environ if v.startswith("SB_")]:
        monkeypatch.delenv(variable)
    for variable, value in environment(doc).items():
        monkeypatch.setenv(variable, value)
    settings = load()
    assert settings.http_port == int(environment(doc)["SB_HTTP_PORT"])
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.redis_dsn.startswith("rediss://")
    # every pod sends mail; only the edge reads the mailbox (its Secret merges into SB_EMAIL)
    email = settings.section("email", EmailSettings)
    assert email is not None and email.smtp is not None
    assert [a.name for a in email.accounts] == (["support"] if doc.kind == "StatefulSet" else [])
    # the Secret's placeholders must never run
    with pytest.raises(ConfigError, match="SB_REPLY_TOKEN_KEY"):
        settings.require_reply_token_key()


def test_only_the_edge_reads_a_mailbox() -> None:
    readers = [d.name for d in workloads() if "SB_EMAIL__ACCOUNTS" in environment(d)]
    assert readers == ["switchboard-edge-support"]
    edge = one("StatefulSet", "switchboard-edge-support")
    assert edge.body["spec"]["replicas"] == 1
    assert container(edge)["args"] == ["run"]
    for doc in workloads():
        if doc.name != edge.name:
            assert "accounts" not in environment(doc).get("SB_EMAIL", "")


def test_commands_and_stages_are_real() -> None:
    commands = {d.name: container(d)["args"] for d in workloads()}
    assert commands == {"switchboard-edge-support": ["run"], "switchboard-api": ["run"],
                        "switchboard-route": ["worker"], "switchboard-send": ["worker"]}
    stages = {d.name: load(stages=environment(d)["SB_STAGES"]).stages for d in workloads()}
    # the edge and the API take messages only; the workers run every stage between them
    assert stages["switchboard-edge-support"] == stages["switchboard-api"] == ()
    assert set(stages["switchboard-route"]) | set(stages["switchboard-send"]) == set(STAGE_TOPICS)


def test_ports_and_probes_are_the_routers() -> None:
    app = build_app(load(), {})
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    for doc in workloads():
        port = int(environment(doc)["SB_HTTP_PORT"])
        c = container(doc)
        assert c["ports"] == [{"name": "http", "containerPort": port}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["startupProbe"]["httpGet"]["path"] in paths
        annotations = doc.body["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == port
        assert annotations["prometheus.io/path"] in paths
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    api = one("Service", "switchboard-api").body["spec"]
    assert api["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE, re.M)


def test_services_and_budgets_select_pods() -> None:
    labels = [d.body["spec"]["template"]["metadata"]["labels"] for d in workloads()]
    for doc in of_kind("Service") + of_kind("PodDisruptionBudget"):
        selector = doc.body["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [lbl for lbl in labels if selector.items() <= lbl.items()]
        assert len(matched) == 1, f"{doc.kind} {doc.name} selects {len(matched)} workloads"
    for doc in workloads():
        assert doc.body["spec"]["selector"]["matchLabels"].items() <= \
            doc.body["spec"]["template"]["metadata"]["labels"].items()


def test_references_resolve() -> None:
    configmaps = {d.name for d in of_kind("ConfigMap")}
    secrets = {d.name for d in of_kind("Secret")}
    for doc in workloads():
        for source in container(doc)["envFrom"]:
            ref = source.get("configMapRef") or source["secretRef"]
            assert ref["name"] in (configmaps if "configMapRef" in source else secrets)
        for volume in pod(doc)["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        assert pod(doc)["serviceAccountName"] in {d.name for d in of_kind("ServiceAccount")}


def _mounts(doc: Doc) -> dict[str, dict[str, Any]]:
    volumes = {v["name"]: v for v in pod(doc)["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container(doc)["volumeMounts"]}


def test_the_policy_mounted_passes_policy_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(one("ConfigMap", "switchboard-policy").body["data"]["policy.yaml"])
    assert switchboard(["policy", "check", str(policy)]) == 0
    assert "valid" in capsys.readouterr().out
    for doc in workloads():
        path = Path(environment(doc)["SB_POLICY_FILE"])
        mounted = _mounts(doc)[str(path.parent)]
        # a whole directory, so an edited ConfigMap reaches the pod (a subPath never updates)
        assert mounted["configMap"]["name"] == "switchboard-policy"
        assert not any("subPath" in m for m in container(doc)["volumeMounts"])


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE, re.M)
    workdir = re.findall(r"^WORKDIR (\S+)$", DOCKERFILE, re.M)[-1]
    assert user
    for doc in workloads():
        context = pod(doc)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        c = container(doc)["securityContext"]
        assert c == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                     "capabilities": {"drop": ["ALL"]}}
        assert pod(doc)["automountServiceAccountToken"] is False
        # where the process writes: the state dir and Faust's data dir (the working directory), /tmp
        writable = {path for path, v in _mounts(doc).items() if "emptyDir" in v}
        assert {environment(doc)["SB_STATE_DIR"], workdir, "/tmp"} <= writable
    namespace = one("Namespace", "switchboard").body["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(value[:-2]) * units[value[-2:]]


def test_every_container_has_requests_and_limits() -> None:
    for doc in workloads():
        resources = container(doc)["resources"]
        assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])
        assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])


def test_the_grace_period_outlasts_the_stop_deadline() -> None:
    for doc in workloads():
        pre_stop = container(doc).get("lifecycle", {}).get("preStop", {}).get("exec", {})
        pause = float(pre_stop["command"][1]) if pre_stop else 0.0
        grace = pod(doc)["terminationGracePeriodSeconds"]
        # SIGTERM comes after preStop; the process exits by itself within its deadline
        assert grace >= pause + STOP_DEADLINE_SECONDS + 5, doc.name
    assert re.search(r'^ENTRYPOINT \["tini", "--", "switchboard"\]$', DOCKERFILE, re.M)


def _max_pods(doc: Doc) -> int:
    autoscalers = [h for h in of_kind("HorizontalPodAutoscaler")
                   if h.body["spec"]["scaleTargetRef"]["name"] == doc.name]
    if autoscalers:
        return int(autoscalers[0].body["spec"]["maxReplicas"])
    return int(doc.body["spec"]["replicas"])


def _surge(doc: Doc) -> int:
    if doc.kind != "Deployment":
        return 0  # a StatefulSet replaces its pod, never runs two
    return int(doc.body["spec"]["strategy"]["rollingUpdate"]["maxSurge"])


def test_never_more_workers_than_partitions() -> None:
    partitions = int(one("ConfigMap", "switchboard-settings").body["data"]["SB_KAFKA_PARTITIONS"])
    # each stage has a consumer group of its own: a stage's workers share its partitions, and
    # pods without stages hold none; one more worker than partitions would only idle
    for d in workloads():
        if environment(d)["SB_STAGES"]:
            assert _max_pods(d) + _surge(d) <= partitions, d.name


def test_workers_scale_on_the_lag_of_their_own_topics() -> None:
    assert "sb_consumer_lag" in exposed()
    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus" / "adapter.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["externalRules"]}
    scaled = of_kind("HorizontalPodAutoscaler")
    assert {h.body["spec"]["scaleTargetRef"]["name"] for h in scaled} == {
        "switchboard-route", "switchboard-send"}
    for hpa in scaled:
        spec = hpa.body["spec"]
        target = one(spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"])
        assert "replicas" not in target.body["spec"]  # the autoscaler owns the count
        stages = environment(target)["SB_STAGES"].split(",")
        consumed = {spec_.name for stage in stages for spec_ in STAGE_TOPICS[stage]}
        for metric in spec["metrics"]:
            external = metric["external"]["metric"]
            assert external["name"] in served
            assert external["selector"]["matchLabels"]["topic"] in consumed
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]


def test_the_image_holds_what_it_runs() -> None:
    copied = {path for source in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
              for path in source.split()}
    assert all((ROOT / path).exists() for path in copied), copied
    # every package the wheel is built from, and the files its metadata names
    pyproject = (ROOT / "pyproject.toml").read_text()
    found = re.search(r"^include = \[(.+)\]$", pyproject, re.M)
    assert found
    packages = {name.strip(' "*') for name in found[1].split(",")}
    assert packages | {"pyproject.toml", "README.md"} <= copied
    # and nothing the build does not need is sent to it: the local stack alone is hundreds of MB
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")}
    assert {".local", ".venv", ".git"} <= ignored
    assert not ignored & copied
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    assert kustomization()["images"] == [{"name": "switchboard", "newTag": version[1]}]
    assert {container(d)["image"] for d in workloads()} == {"switchboard"}
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert compose["services"]["router"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
