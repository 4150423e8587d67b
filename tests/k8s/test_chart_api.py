"""The chart's optional API (medfl serve): a Deployment and a Service, with the
kubernetes backend's ServiceAccount and Role; off by default. Rendered by the real helm,
validated with kubernetes-validate --strict; nothing here reaches a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s.test_chart import CHART, HELM, K8S_VERSION, helm, render, rules

pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed (make install)")
API_VALUES = yaml.safe_load((CHART / "ci" / "api-values.yaml").read_text())
API_OBJECTS = [
    ("Deployment", "medfl-api"),
    ("PersistentVolumeClaim", "medfl-api-data"),
    ("Role", "medfl-api"),
    ("RoleBinding", "medfl-api"),
    ("Service", "medfl-api"),
    ("ServiceAccount", "medfl-api"),
]


def _api(objects: dict[tuple[str, str], Any]) -> list[tuple[str, str]]:
    return sorted(k for k in objects if k[1].startswith("medfl-api"))


def test_the_api_is_off_by_default(tmp_path: Path) -> None:
    assert _api(render(tmp_path)) == []


def test_enabled_it_renders_a_deployment_service_and_its_rbac_that_validate(tmp_path: Path):
    objects = render(tmp_path, API_VALUES)
    assert _api(objects) == API_OBJECTS
    for key in API_OBJECTS:
        kubernetes_validate.validate(objects[key], K8S_VERSION, strict=True)
    assert rules(objects[("Role", "medfl-api")]) == {
        ("medfl.io", "federatedexperiments"): ["get", "list", "watch", "create"],
        ("", "pods"): ["get", "list"],
        ("", "pods/log"): ["get"],
    }


def test_the_service_reaches_the_api_pod_and_not_the_operator(tmp_path: Path) -> None:
    objects = render(tmp_path, API_VALUES)
    selector = objects[("Service", "medfl-api")]["spec"]["selector"]
    api_pod = objects[("Deployment", "medfl-api")]["spec"]["template"]["metadata"]["labels"]
    operator_pod = objects[("Deployment", "medfl-operator")]["spec"]["template"]["metadata"]
    assert selector.items() <= api_pod.items()
    assert not selector.items() <= operator_pod["labels"].items()
    operator_selector = objects[("Deployment", "medfl-operator")]["spec"]["selector"]
    assert not operator_selector["matchLabels"].items() <= api_pod.items()


def test_the_api_pod_binds_its_address_takes_the_token_and_url_from_secrets(tmp_path: Path):
    pod = render(tmp_path, API_VALUES)[("Deployment", "medfl-api")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == [
        "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/var/lib/medfl",
    ]  # fmt: skip
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MEDFL_API_TOKEN"] == {"secretKeyRef": {"name": "medfl-api", "key": "token"}}
    assert env["MEDFL_DATABASE_URL"] == {"secretKeyRef": {"name": "medfl-api-db", "key": "url"}}
    assert (env["MEDFL_KUBERNETES"], env["MEDFL_KUBERNETES_NAMESPACE"]) == ("true", "medfl")
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "medfl-api"


def test_without_the_kubernetes_backend_the_api_has_no_cluster_rights(tmp_path: Path) -> None:
    values = {"api": {**API_VALUES["api"], "kubernetesBackend": False}}
    objects = render(tmp_path, values)
    assert _api(objects) == [
        ("Deployment", "medfl-api"), ("PersistentVolumeClaim", "medfl-api-data"),
        ("Service", "medfl-api"),
    ]  # fmt: skip
    pod = objects[("Deployment", "medfl-api")]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_enabling_the_api_without_a_token_secret_is_refused(tmp_path: Path) -> None:
    done = helm("template", "medfl", str(CHART), values={"api": {"enabled": True}}, tmp=tmp_path)
    assert done.returncode != 0
    assert "at '/api/tokenSecret/name': minLength: got 0, want 1" in done.stderr, done.stderr
