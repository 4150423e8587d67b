"""The operator on a real cluster: what the emulator cannot prove (admission and schema
pruning by a real API server, RBAC, scheduling, image pulls, the kubelet running the
pods, garbage collection by owner references). Skipped without KUBECONFIG.

Needs the chart installed with working images (README, "Kubernetes": kind or k3d
commands); experiments go to MEDFL_CLUSTER_NAMESPACE (default: medfl), the namespace
of the chart's results claim."""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from medfl.k8s import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"), reason="no KUBECONFIG: these tests need a real cluster"
)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples/heart-disease/federatedexperiment.yaml"
NAMESPACE = os.environ.get("MEDFL_CLUSTER_NAMESPACE", "medfl")
T = TypeVar("T")


def _wait(what: Callable[[], T | None], timeout: float, message: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    from kubernetes import client, config

    config.load_kube_config()
    yield client.ApiClient()


def _experiment(api: Any, **spec: Any) -> str:
    from kubernetes import client

    cr = yaml.safe_load(EXAMPLE.read_text())
    name = f"cluster-{uuid.uuid4().hex[:6]}"
    cr["metadata"] = {"name": name, "namespace": NAMESPACE}
    cr["spec"].update(copy.deepcopy(spec))
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, cr
    )
    return name


def _status(api: Any, name: str) -> dict[str, Any]:
    from kubernetes import client

    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, name
    )
    return dict(obj.get("status") or {})


def _delete(api: Any, name: str) -> None:
    from kubernetes import client

    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, name
    )


def _children(api: Any, name: str) -> list[Any]:
    from kubernetes import client

    selector = f"medfl.io/experiment={name}"
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    found = list(apps.list_namespaced_deployment(NAMESPACE, label_selector=selector).items)
    found += core.list_namespaced_service(NAMESPACE, label_selector=selector).items
    found += core.list_namespaced_secret(NAMESPACE, label_selector=selector).items
    return found


def test_the_example_runs_to_succeeded_and_deleting_it_removes_every_child(api: Any) -> None:
    name = _experiment(api, training={"rounds": 3, "localEpochs": 1, "seed": 42})
    try:
        status = _wait(
            lambda: (s := _status(api, name)).get("phase") in ("Succeeded", "Failed") and s,
            900,
            f"{name} to finish",
        )
        assert status["phase"] == "Succeeded", status
        assert status["round"] == "3/3"
        assert len(_children(api, name)) == 5 + 5 + 1  # Deployments, Secrets, the Service
    finally:
        _delete(api, name)
    _wait(
        lambda: not _children(api, name), 120, f"the garbage collector to remove {name}'s children"
    )


def test_an_invalid_spec_is_failed_by_the_operator_without_children(api: Any) -> None:
    sites = yaml.safe_load(EXAMPLE.read_text())["spec"]["sites"]
    name = _experiment(api, sites=[sites[0], sites[0]])  # passes the CRD, not medfl's rules
    try:
        status = _wait(
            lambda: (s := _status(api, name)).get("phase") == "Failed" and s, 60, "Failed"
        )
        valid = next(c for c in status["conditions"] if c["type"] == "Valid")
        assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
        assert _children(api, name) == []
    finally:
        _delete(api, name)
