"""Per-site placement and the runtime image: Kubernetes-only parts of the spec."""

from __future__ import annotations

from typing import Any

import pytest

import medfl
from medfl.errors import SpecError
from medfl.spec import DataVolume, Runtime, Toleration, default_runtime_image, parse_experiment
from tests.helpers import spec_dict

GPU_SITE = {
    "name": "gpu-site",
    "data": {"source": "csv", "path": "/data/site.csv"},
    "placement": {
        "nodeSelector": {"hospital": "a"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "site", "value": "a", "tolerationSeconds": 60, "effect": "NoExecute"},
        ],
        "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
        "gpus": 1,
        "volume": {"claimName": "site-a-data", "mountPath": "/data"},
    },
}
PLAIN_SITE = {"name": "plain", "data": {"source": "csv", "path": "/data/plain.csv"}}


def with_placement(placement: dict[str, Any]) -> dict[str, Any]:
    return spec_dict([{**PLAIN_SITE, "placement": placement}])


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as exc:
        parse_experiment(doc)
    return exc.value.problems


def test_placement_is_parsed_typed() -> None:
    site = parse_experiment(spec_dict([GPU_SITE, PLAIN_SITE])).sites[0]
    placement = site.placement
    assert placement.node_selector == {"hospital": "a"}
    assert placement.tolerations[0] == Toleration(
        key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"
    )
    assert placement.tolerations[1].operator == "Equal"
    assert placement.tolerations[1].toleration_seconds == 60
    assert placement.resources.requests == {"cpu": "2", "memory": "4Gi"}  # 2 read as "2"
    assert placement.gpus == 1
    assert placement.volume == DataVolume(claim_name="site-a-data", mount_path="/data")


def test_a_site_without_placement_gets_none_of_it() -> None:
    site = parse_experiment(spec_dict([PLAIN_SITE])).sites[0]
    assert site.placement.gpus == 0
    assert site.placement.volume is None
    assert site.placement.tolerations == []


def test_placement_round_trips_in_camel_case() -> None:
    wire = parse_experiment(spec_dict([GPU_SITE])).to_wire()
    placement = wire["sites"][0]["placement"]
    assert placement["nodeSelector"] == {"hospital": "a"}
    assert placement["volume"] == {
        "claimName": "site-a-data",
        "hostPath": None,
        "mountPath": "/data",
    }
    assert placement["tolerations"][1]["tolerationSeconds"] == 60
    assert parse_experiment(wire) == parse_experiment(spec_dict([GPU_SITE]))


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        (
            {"volume": {"claimName": "data", "hostPath": "/srv/data"}},
            ("sites[0].placement.volume", "give exactly one of 'claimName' or 'hostPath'"),
        ),
        (
            {"volume": {"mountPath": "/data"}},
            ("sites[0].placement.volume", "give exactly one of 'claimName' or 'hostPath'"),
        ),
        (
            {"volume": {"hostPath": "srv/data"}},
            ("sites[0].placement.volume.hostPath", "String should match pattern '^/'"),
        ),
        (
            {"gpus": -1},
            ("sites[0].placement.gpus", "Input should be greater than or equal to 0"),
        ),
        (
            {"resources": {"limits": {"memory": "lots"}}},
            (
                "sites[0].placement.resources.limits.memory",
                "String should match pattern "
                "'^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$'",
            ),
        ),
        (
            {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
            (
                "sites[0].placement.resources",
                "give GPUs as placement.gpus, not as 'nvidia.com/gpu'",
            ),
        ),
        (
            {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]},
            ("sites[0].placement.tolerations[0]", "operator 'Exists' takes no 'value'"),
        ),
        (
            {"tolerations": [{"effect": "NoSchedule"}]},
            (
                "sites[0].placement.tolerations[0]",
                "a toleration without 'key' needs operator 'Exists'",
            ),
        ),
        (
            {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]},
            (
                "sites[0].placement.tolerations[0].effect",
                "Input should be 'NoSchedule', 'PreferNoSchedule' or 'NoExecute'",
            ),
        ),
        (
            {"nodeSelector": {"pool": "gpu"}, "gpu": 1},
            ("sites[0].placement.gpu", "unknown field"),
        ),
    ],
)
def test_bad_placement_is_rejected_with_its_path(
    placement: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert problems(with_placement(placement)) == [expected]


def test_runtime_defaults_to_the_operators_image() -> None:
    experiment = parse_experiment(spec_dict([PLAIN_SITE]))
    assert experiment.runtime == Runtime(image=None, image_pull_policy=None)
    assert default_runtime_image() == f"ghcr.io/medfl/runtime:{medfl.__version__}"


def test_runtime_image_and_pull_policy_are_read() -> None:
    doc = spec_dict(
        [PLAIN_SITE], runtime={"image": "registry.local/medfl:dev", "imagePullPolicy": "Always"}
    )
    runtime = parse_experiment(doc).runtime
    assert (runtime.image, runtime.image_pull_policy) == ("registry.local/medfl:dev", "Always")


def test_bad_pull_policy_is_rejected() -> None:
    doc = spec_dict([PLAIN_SITE], runtime={"imagePullPolicy": "Sometimes"})
    assert problems(doc) == [
        ("runtime.imagePullPolicy", "Input should be 'Always', 'IfNotPresent' or 'Never'")
    ]
