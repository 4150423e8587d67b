"""Shared pieces of the operator tests: a spec with every kind of placement, the
operator's settings as the GPU values of the chart give them, and an owner."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes.config.kube_config
import pytest
import yaml
from kopf.testing import KopfRunner
from medfl_operator import Owner, Target
from medfl_operator._settings import CONFIG_ENV, POLL_ENV

if TYPE_CHECKING:
    from tests.operator.cluster import Cluster

from medfl.deploy import free_port
from medfl.k8s._config import OperatorConfig
from medfl.spec import Experiment, parse_experiment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "heart-disease" / "federatedexperiment.yaml"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

GPU_PLACEMENT = {
    "nodeSelector": {"hospital": "cleveland"},
    "tolerations": [{"key": "hospital", "operator": "Equal", "value": "cleveland"}],
    "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
    "gpus": 2,
    "volume": {"claimName": "cleveland-data", "mountPath": "/data"},
}
CONFIG = {
    "runtime": {"image": "registry.local/medfl/runtime:0.1.0", "imagePullPolicy": "Always"},
    "gpuPool": {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "results": {"claimName": "medfl-results"},
}
# the running operator's: a site of these tests' own has a policy (no example site has)
RUNNING_CONFIG = {
    "results": {"claimName": "medfl-results"},
    "sitePolicies": {"policy-site": {"configMap": "policy-site-policy"}},
    "ray": {"clusterName": "gpu-ray"},
}


def example_cr() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def placed_cr() -> dict[str, Any]:
    """The example with a GPU site on a claim, a site on a host path, two plain ones."""
    cr = example_cr()
    cr["spec"]["sites"][0]["placement"] = GPU_PLACEMENT
    cr["spec"]["sites"][1]["placement"] = {"volume": {"hostPath": "/srv/hungary"}}
    return cr


def experiment_of(cr: dict[str, Any]) -> Experiment:
    return parse_experiment(cr)


@pytest.fixture
def config() -> OperatorConfig:
    return OperatorConfig.model_validate(CONFIG)


@pytest.fixture
def owner() -> Owner:
    return Owner("heart-disease", "research", UID, generation=3)


@pytest.fixture
def target(config: OperatorConfig, owner: Owner) -> Target:
    return Target(experiment_of(placed_cr()), config, owner)


def owner_body(owner: Owner) -> dict[str, Any]:
    """The experiment as kopf hands it to a handler (what kopf.adopt reads)."""
    return {
        "apiVersion": "medfl.io/v1alpha1",
        "kind": "FederatedExperiment",
        "metadata": {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The emulated API server with the operator running against it (kopf in a thread)."""
    from tests.operator.cluster import Cluster, Http, Kubelet
    from tests.operator.emulator import ApiServer

    folder = tmp_path_factory.mktemp("cluster")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(RUNNING_CONFIG))
    with ApiServer() as server, pytest.MonkeyPatch.context() as patch:
        kubeconfig = folder / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server.url)))
        # kopf's login and the operator's client both read the default kubeconfig
        patch.setattr(
            kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
        )
        patch.setenv(CONFIG_ENV, str(config))
        patch.setenv(POLL_ENV, "0.3")
        patch.setenv("FLWR_TELEMETRY_ENABLED", "0")
        # as the chart's Deployment runs it by default (every namespace, liveness endpoint)
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        args = ["run", "--module=medfl_operator", "--standalone", "--all-namespaces"]
        args.append(f"--liveness={liveness}")
        with KopfRunner(args) as runner:
            http = Http(server.url)
            yield Cluster(server, http, Kubelet(http, server.emulator.pod_logs), liveness=liveness)
    assert runner.exception is None, runner.output[-5000:]
    assert runner.exit_code == 0


@pytest.fixture
def one_at_a_time(cluster: Cluster) -> Iterator[None]:
    """Each test's experiments are deleted after it: one emulated API server serves
    every status loop, and it is slow enough that a dozen loops would crowd it."""
    from tests.operator.cluster import wait_for

    yield
    for name in cluster.made:
        if cluster.http.get("FederatedExperiment", name) is not None:
            cluster.http.delete("FederatedExperiment", name)
    for name in cluster.made:
        wait_for(lambda n=name: cluster.http.get("FederatedExperiment", n) is None, message=name)
    cluster.made.clear()


def _kubeconfig(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "tests", "user": {"token": "unused"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tests"}}],
        "current-context": "kmock",
    }
