"""The API's kubernetes backend against the emulated cluster with the operator
running: launching creates the FederatedExperiment, and the run follows its status
(the phase) to the end, while the test plays the kubelet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medfl import run
from medfl.api import Settings, create_app
from medfl.k8s._joblog import result_lines
from medfl.spec import parse_experiment
from tests.api.conftest import AUTH, TOKEN, create, heart_spec, wait_for
from tests.operator.cluster import Cluster
from tests.operator.conftest import example_cr
from tests.operator.test_backend_kubernetes import Kubelet

pytestmark = pytest.mark.usefixtures("one_at_a_time")


@pytest.fixture(scope="module")
def server_result(tmp_path_factory: pytest.TempPathFactory) -> str:
    """result.json as the cluster's ServerApp writes it: a real two-round run here."""
    experiment = parse_experiment(example_cr())
    short = experiment.training.model_copy(update={"rounds": 2})
    out = tmp_path_factory.mktemp("server") / "run"
    run(experiment.model_copy(update={"training": short}), out=out, baselines=False, report=False)
    return (out / "result.json").read_text()


def _client(tmp_path: Path) -> TestClient:
    settings = Settings(
        data_dir=tmp_path, api_token=TOKEN, kubernetes=True, kubernetes_namespace="default",
        kubernetes_poll_s=0.1,
    )  # fmt: skip
    return TestClient(create_app(settings), headers=AUTH)


def _launch(client: TestClient, name: str) -> str:
    experiment_id = create(client, heart_spec(rounds=15, name=name))
    response = client.post(f"/api/experiments/{experiment_id}/runs", json={"backend": "kubernetes"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_launching_on_kubernetes_creates_the_experiment_and_follows_it(
    cluster: Cluster, tmp_path: Path, server_result: str
) -> None:
    log = "\n".join(["INFO submitted", *result_lines(server_result), ""])
    kubelet = Kubelet(cluster, "api-ok", succeeds=True, log=log)
    kubelet.start()
    with _client(tmp_path) as client:
        assert client.get("/api/backends").json() == ["fast", "kubernetes"]
        run_id = _launch(client, "api-ok")
        run = wait_for(client, run_id, lambda r: r["status"] not in ("queued", "running"), 60)
        rounds = client.get(f"/api/runs/{run_id}/rounds").json()
        result = client.get(f"/api/runs/{run_id}/result").json()
        names = [a["name"] for a in client.get(f"/api/runs/{run_id}/artifacts").json()]
    kubelet.join(15)
    assert (run["status"], run["phase"], run["backend"]) == ("succeeded", "Succeeded", "kubernetes")
    # result.json from the submission's log: its rounds, per site, replace the status's
    assert result == json.loads(server_result)
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[1]["sites"]["cleveland"]["metrics"] == result["rounds"][1]["sites"][
        "cleveland"]["metrics"]  # fmt: skip
    assert "report.md" in names and "curves.png" in names
    created = kubelet.created
    assert created["metadata"]["namespace"] == "default"
    assert [s["name"] for s in created["spec"]["sites"]] == [
        "cleveland", "hungary", "switzerland", "va-long-beach",
    ]  # fmt: skip
    assert created["spec"]["sites"][0]["data"] == {
        "source": "demo", "dataset": "heart-disease", "hospital": "Cleveland",
    }  # fmt: skip


def test_a_run_failing_on_the_cluster_fails_with_the_operators_reason(
    cluster: Cluster, tmp_path: Path
) -> None:
    kubelet = Kubelet(cluster, "api-bad", succeeds=False, message="site hungary refused")
    kubelet.start()
    with _client(tmp_path) as client:
        run_id = _launch(client, "api-bad")
        run = wait_for(client, run_id, lambda r: r["status"] not in ("queued", "running"), 60)
    kubelet.join(15)
    assert (run["status"], run["phase"]) == ("failed", "Failed")
    assert run["error"] == "the experiment failed on the cluster: site hungary refused"
