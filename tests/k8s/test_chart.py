"""The Helm chart, rendered by the real helm (v4, fetched by `make install`): what it
creates with default, GPU-pool and single-namespace values, and what its values schema
refuses. Nothing here reaches a cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import medfl
from medfl.k8s import crd_manifest
from medfl.k8s._config import CONFIG_FILE, OperatorConfig
from medfl.spec import Toleration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "medfl"
K8S_VERSION = "1.35"
HELM = shutil.which("helm", path=str(Path(sys.executable).parent)) or shutil.which("helm")

pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed (make install)")

GPU_VALUES = {
    "gpuPool": {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "runtime": {
        "image": {"repository": "registry.local/runtime", "tag": "cuda", "pullPolicy": "Always"}
    },
}

OPERATOR_RULES = {  # (apiGroup, resource) -> verbs, in every watch mode
    ("medfl.io", "federatedexperiments"): ["get", "list", "watch", "patch"],
    ("medfl.io", "federatedexperiments/status"): ["get", "patch"],
    ("medfl.io", "federatedexperiments/finalizers"): ["update"],
    ("apps", "deployments"): ["get", "list", "watch", "create", "patch", "delete"],
    ("", "services"): ["get", "list", "watch", "create", "patch", "delete"],
    ("", "secrets"): ["get", "create", "patch", "delete"],
    ("", "configmaps"): ["get", "create", "patch", "delete"],
    ("batch", "jobs"): ["get", "list", "watch", "create", "delete"],
    ("", "pods"): ["get", "list", "watch"],
    ("", "pods/log"): ["get"],
    ("ray.io", "rayjobs"): ["get", "list", "watch", "create", "delete"],
    ("", "events"): ["create"],
}


def helm(*args: str, values: dict[str, Any] | None = None, tmp: Path | None = None):
    cmd = [str(HELM), *args]
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["--values", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def render(tmp: Path, values: dict[str, Any] | None = None) -> dict[tuple[str, str], Any]:
    done = helm("template", "medfl", str(CHART), "--namespace", "medfl", values=values, tmp=tmp)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def rules(role: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    out = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out[(group, resource)] = rule["verbs"]
    return out


def operator_config(objects: dict[tuple[str, str], Any]) -> OperatorConfig:
    return OperatorConfig.from_yaml(objects[("ConfigMap", "medfl-operator")]["data"][CONFIG_FILE])


def test_chart_metadata_follows_medfl() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["version"]) == ("v2", "0.1.0")
    assert chart["appVersion"] == medfl.__version__


@pytest.mark.parametrize("values", [*sorted((CHART / "ci").glob("*-values.yaml")), None])
def test_helm_lint_strict_passes(values: Path | None) -> None:
    extra = ["--values", str(values)] if values else []
    done = helm("lint", str(CHART), "--strict", *extra)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "values",
    [{}, GPU_VALUES, {"crds": {"enabled": False}}, {"watchNamespace": "research"}],
    ids=["default", "gpu-pool", "no-crds", "one-namespace"],
)
def test_every_rendered_manifest_passes_kubernetes_validate_strict(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    for obj in render(tmp_path, values).values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_default_render_holds_the_operator_and_the_generated_crd(tmp_path: Path) -> None:
    objects = render(tmp_path)
    assert sorted(objects) == [
        ("ClusterRole", "medfl-framework"),
        ("ClusterRole", "medfl-operator"),
        ("ClusterRoleBinding", "medfl-framework"),
        ("ClusterRoleBinding", "medfl-operator"),
        ("ConfigMap", "medfl-operator"),
        ("CustomResourceDefinition", "federatedexperiments.medfl.io"),
        ("Deployment", "medfl-operator"),
        ("PersistentVolumeClaim", "medfl-results"),
        ("ServiceAccount", "medfl"),
    ]
    assert objects[("CustomResourceDefinition", "federatedexperiments.medfl.io")] == crd_manifest()


def test_operator_deployment_is_one_recreated_non_root_replica(tmp_path: Path) -> None:
    deployment = render(tmp_path)[("Deployment", "medfl-operator")]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "medfl"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == f"ghcr.io/medfl/operator:{medfl.__version__}"
    assert container["command"] == [
        "kopf", "run", "--module=medfl_operator", "--standalone", "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]  # fmt: skip
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["ports"] == [{"name": "liveness", "containerPort": 8080, "protocol": "TCP"}]


def test_rbac_grants_exactly_the_intended_verbs(tmp_path: Path) -> None:
    objects = render(tmp_path)
    assert rules(objects[("ClusterRole", "medfl-operator")]) == OPERATOR_RULES
    assert rules(objects[("ClusterRole", "medfl-framework")]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"],
        ("", "namespaces"): ["list", "watch"],
    }
    binding = objects[("ClusterRoleBinding", "medfl-operator")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "medfl", "namespace": "medfl"}
    ]


def test_watch_namespace_uses_a_role_there(tmp_path: Path) -> None:
    objects = render(tmp_path, {"watchNamespace": "research"})
    role = objects[("Role", "medfl-operator")]
    assert role["metadata"]["namespace"] == "research"
    assert rules(role) == OPERATOR_RULES
    binding = objects[("RoleBinding", "medfl-operator")]
    assert binding["metadata"]["namespace"] == "research"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "medfl-operator"
    }  # fmt: skip
    assert ("ClusterRole", "medfl-operator") not in objects
    framework = rules(objects[("ClusterRole", "medfl-framework")])
    assert ("", "namespaces") not in framework  # no namespace to follow
    [container] = objects[("Deployment", "medfl-operator")]["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--namespace=research" in container["command"]
    assert "--all-namespaces" not in container["command"]
    assert operator_config(objects).watch_namespace == "research"


def test_crds_disabled_leaves_the_crd_out(tmp_path: Path) -> None:
    kinds = {kind for kind, _ in render(tmp_path, {"crds": {"enabled": False}})}
    assert "CustomResourceDefinition" not in kinds
    assert "Deployment" in kinds


def test_gpu_pool_and_runtime_image_reach_the_operator(tmp_path: Path) -> None:
    objects = render(tmp_path, GPU_VALUES)
    config = operator_config(objects)
    assert config.gpu_pool.node_selector == {"nvidia.com/gpu.present": "true"}
    assert config.gpu_pool.tolerations == [
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    ]
    assert config.runtime.image == "registry.local/runtime:cuda"
    assert config.runtime.image_pull_policy == "Always"
    assert config.results is not None and config.results.claim_name == "medfl-results"
    pod = objects[("Deployment", "medfl-operator")]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert {"name": "MEDFL_OPERATOR_CONFIG", "value": "/etc/medfl/config.yaml"} in container["env"]
    assert "nodeSelector" not in pod["spec"]  # the GPU pool is for site pods, not the operator


def test_site_policies_reach_the_operator(tmp_path: Path) -> None:
    policies = {"hungary": {"configMap": "hungary-policy", "ledgerClaim": "hungary-ledger"}}
    config = operator_config(render(tmp_path, {"sitePolicies": policies}))
    hungary = config.site_policies["hungary"]
    assert (hungary.config_map, hungary.key, hungary.ledger_claim) == (
        "hungary-policy",
        "policy.yaml",
        "hungary-ledger",
    )
    assert operator_config(render(tmp_path)).site_policies == {}


def test_a_ray_cluster_for_searches_reaches_the_operator(tmp_path: Path) -> None:
    config = operator_config(render(tmp_path, {"ray": {"clusterName": "gpu-ray"}}))
    assert config.ray is not None and config.ray.cluster_name == "gpu-ray"
    assert operator_config(render(tmp_path)).ray is None


def test_default_config_names_this_versions_runtime_image(tmp_path: Path) -> None:
    config = operator_config(render(tmp_path))
    assert config.runtime.image == f"ghcr.io/medfl/runtime:{medfl.__version__}"
    assert config.gpu_pool.tolerations == []


def test_a_new_config_restarts_the_operator(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = render(tmp_path, values)[("Deployment", "medfl-operator")]["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum(GPU_VALUES)


def test_existing_results_claim_and_service_account(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "ci" / "existing-pvc-values.yaml").read_text())
    objects = render(tmp_path, values)
    kinds = {kind for kind, _ in objects}
    assert "PersistentVolumeClaim" not in kinds and "ServiceAccount" not in kinds
    assert operator_config(objects).results.claim_name == "shared-results"  # type: ignore[union-attr]
    pod = objects[("Deployment", "medfl-operator")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "medfl-operator"


def test_created_results_claim_is_kept_on_uninstall(tmp_path: Path) -> None:
    pvc = render(tmp_path)[("PersistentVolumeClaim", "medfl-results")]
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"gpuPool": {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]}},
            "- at '/gpuPool/tolerations/0/effect': value must be one of 'NoSchedule', "
            "'PreferNoSchedule', 'NoExecute'",
        ),
        ({"replicas": 2}, "- at '': additional properties 'replicas' not allowed"),
        (
            {"watchNamespace": "Research"},
            "- at '/watchNamespace': 'Research' does not match pattern "
            "'^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        (
            {"results": {"pvc": {"create": False, "name": ""}}},
            "- at '/results/pvc/name': minLength: got 0, want 1",
        ),
        (
            {"resources": {"limits": {"memory": "lots"}}},
            "- at '/resources/limits/memory': 'lots' does not match pattern '^[+-]?",
        ),
        (
            {"sitePolicies": {"hungary": {"ledgerClaim": "x"}}},
            "- at '/sitePolicies/hungary': missing property 'configMap'",
        ),
    ],
    ids=[
        "toleration-effect",
        "unknown-key",
        "namespace",
        "existing-claim-unnamed",
        "quantity",
        "policy-without-config-map",
    ],
)
def test_bad_values_are_refused_naming_the_field(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    done = helm("template", "medfl", str(CHART), values=values, tmp=tmp_path)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def test_values_schema_is_draft_07_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_every_value_is_documented() -> None:
    """Each key in values.yaml has a comment right above it, or sits inside one that has."""
    undocumented, documented_indents = [], []
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        key = re.match(r"^( *)([A-Za-z][\w.]*):", line)
        if key:
            indent = len(key.group(1))
            documented_indents = [i for i in documented_indents if i < indent]
            if previous.lstrip().startswith("#"):
                documented_indents.append(indent)
            elif not documented_indents and not _has_children(line):
                undocumented.append(key.group(2))
        if line.strip():
            previous = line
    assert undocumented == []


def _has_children(line: str) -> bool:
    return line.rstrip().endswith(":")
