"""Spec rules that only Kubernetes needs: a site's data where its pod can read it."""

from __future__ import annotations

from typing import Any

import pytest
from medfl_operator._checks import check_ray, check_site_policies
from medfl_operator._reconcile import parse

from medfl.errors import PolicyError, SpecError
from medfl.k8s._config import OperatorConfig, SitePolicySource
from tests.operator.conftest import example_cr


def _body(**site: Any) -> dict[str, Any]:
    cr = example_cr()
    cr["metadata"].update(namespace="research", uid="u")
    cr["spec"]["sites"][1].update(site)
    return cr


def test_demo_sources_and_absolute_paths_on_the_volume_pass() -> None:
    on_volume = {
        "data": {"source": "csv", "path": "/data/hungary.csv"},
        "placement": {"volume": {"claimName": "hungary-data", "mountPath": "/data"}},
    }
    assert parse(_body(**on_volume)).sites[1].data.path == "/data/hungary.csv"  # type: ignore[union-attr]
    assert parse(_body()).sites[1].name == "hungary"


@pytest.mark.parametrize(
    ("site", "message"),
    [
        (
            {"data": {"source": "csv", "path": "hungary.csv"}},
            "on Kubernetes a data path must be absolute (the pod's view), got hungary.csv",
        ),
        (
            {
                "data": {"source": "parquet", "path": "/srv/hungary.parquet"},
                "placement": {"volume": {"hostPath": "/srv/hungary", "mountPath": "/data"}},
            },
            "/srv/hungary.parquet is not on the site's volume, mounted at /data",
        ),
    ],
)
def test_a_path_the_pod_cannot_read_is_an_invalid_spec(site: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(_body(**site))
    assert caught.value.problems == [("spec.sites[1].data.path", message)]


def test_virtual_sites_are_refused_on_kubernetes() -> None:
    cr = _body()
    cr["spec"]["simulation"] = {
        "virtualSites": {"count": 100, "partitioner": {"type": "shards", "shardSize": 8}}
    }
    with pytest.raises(SpecError) as err:
        parse(cr)
    assert "spec.simulation.virtualSites: virtual sites are simulated by the batched engine" in str(
        err.value
    )


POLICY_WITH_LEDGER = "privacy:\n  maxEpsilon: 10\n  ledger: /var/lib/medfl/ledger/spent.json\n"


@pytest.mark.parametrize(
    ("maps", "source", "said"),
    [
        ({}, {"configMap": "hp"}, "its policy ConfigMap hp is not in this namespace"),
        ({"hp": {"other.yaml": ""}}, {"configMap": "hp"}, "has no key policy.yaml"),
        (
            {"hp": {"policy.yaml": "disclosure:\n  minCellCount: 0\n"}},
            {"configMap": "hp"},
            "disclosure.minCellCount: Input should be greater than or equal to 1",
        ),
        (
            {"hp": {"policy.yaml": POLICY_WITH_LEDGER}},
            {"configMap": "hp"},
            "its policy keeps a ledger, but sitePolicies gives no ledgerClaim to keep it on",
        ),
        (
            {"hp": {"policy.yaml": POLICY_WITH_LEDGER.replace("/var/lib/medfl/ledger", "/tmp")}},
            {"configMap": "hp", "ledgerClaim": "hl"},
            "its policy's ledger /tmp/spent.json must be a file in /var/lib/medfl/ledger",
        ),
    ],
    ids=["no-config-map", "no-key", "invalid", "ledger-without-claim", "ledger-elsewhere"],
)
def test_a_site_policy_its_pod_could_not_use_is_refused_naming_the_site(
    maps: dict[str, dict[str, str]], source: dict[str, str], said: str
) -> None:
    experiment = parse(_body())
    sources = {"hungary": SitePolicySource.model_validate(source)}
    with pytest.raises(PolicyError) as caught:
        check_site_policies(experiment, sources, lambda n: _config_map(maps, n), "FE x")
    assert "site hungary: " in str(caught.value) and said in str(caught.value)


def test_a_usable_policy_and_policies_of_sites_not_in_the_experiment_pass() -> None:
    experiment = parse(_body())
    maps = {"hp": {"policy.yaml": POLICY_WITH_LEDGER}}
    sources = {
        "hungary": SitePolicySource.model_validate({"configMap": "hp", "ledgerClaim": "hl"}),
        "elsewhere": SitePolicySource.model_validate({"configMap": "missing"}),
    }
    check_site_policies(experiment, sources, lambda n: _config_map(maps, n), "FE x")


def _config_map(maps: dict[str, dict[str, str]], name: str) -> dict[str, Any] | None:
    return {"metadata": {"name": name}, "data": maps[name]} if name in maps else None


def test_a_search_on_ray_without_the_charts_ray_cluster_is_refused() -> None:
    space = {"training.learningRate": {"type": "float", "low": 0.01, "high": 0.5}}
    body = _body()
    body["spec"]["tuning"] = {"space": space, "runOn": "ray"}
    experiment = parse(body)
    with pytest.raises(SpecError) as caught:
        check_ray(experiment, OperatorConfig(), "FE x")
    assert caught.value.problems[0][0] == "spec.tuning.runOn"
    assert "ray needs the chart's ray.clusterName" in caught.value.problems[0][1]
    check_ray(experiment, OperatorConfig(ray={"clusterName": "gpu-ray"}), "FE x")  # fine
