"""Spec rules that only Kubernetes needs: a site's data where its pod can read it."""

from __future__ import annotations

from typing import Any

import pytest
from medfl_operator._reconcile import parse

from medfl.errors import SpecError
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
