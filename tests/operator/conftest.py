"""Shared pieces of the operator tests: a spec with every kind of placement, the
operator's settings as the GPU values of the chart give them, and an owner."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from medfl_operator import Owner, Target

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
