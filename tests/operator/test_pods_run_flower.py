"""End to end: the pods the operator renders, started as local processes from their own
specs (tests/operator/local_kubelet.py), run real Flower — medfl server, two medfl
sites with TLS and their keys from the operator's Secrets, medfl submit from the Job —
and the experiment reaches Succeeded with result.json on the results claim. The sites'
readiness probes, run as the kubelet would, pass once Flower has connected them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from medfl.k8s._joblog import last_progress
from medfl.runners._kubernetes import Cluster as UserSide
from medfl.runners._kubernetes import _api, copy_result
from tests.operator.cluster import Cluster, wait_for
from tests.operator.conftest import example_cr, experiment_of
from tests.operator.local_kubelet import LocalPods, termination_message

pytestmark = [pytest.mark.deploy, pytest.mark.usefixtures("one_at_a_time")]
NAME = "flower-e2e"


@pytest.fixture
def pods(cluster: Cluster, tmp_path: Path) -> Iterator[LocalPods]:
    local = LocalPods(cluster.http, tmp_path)
    try:
        yield local
    finally:
        local.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pod_spec(cluster: Cluster, kind: str, name: str) -> dict:  # type: ignore[type-arg]
    found = wait_for(lambda: cluster.http.get(kind, name), 20, name)
    return dict(found["spec"]["template"]["spec"])


def test_the_operators_pods_run_flower_to_succeeded(cluster: Cluster, pods: LocalPods) -> None:
    sites = example_cr()["spec"]["sites"][:2]
    training = {"rounds": 2, "localEpochs": 1, "batchSize": 32, "seed": 7}
    uid = cluster.experiment(NAME, sites=sites, training=training)["metadata"]["uid"]

    server = pods.start("server", _pod_spec(cluster, "Deployment", f"{NAME}-server"))
    log = server.roles["server"].log
    # ready once medfl server has registered every site's key (it says so)
    wait_for(lambda: "server listening" in log.read_text(), 90, "the server to listen")
    assert _listening(pods.server_port)
    cluster.kubelet.run(f"{NAME}-server")
    for site in ("cleveland", "hungary"):
        pods.start(site, _pod_spec(cluster, "Deployment", f"{NAME}-site-{site}"))
        assert not pods.ready(site)  # not connected yet: its probe says so
    for site in ("cleveland", "hungary"):  # ready once its SuperNode has connected
        wait_for(lambda s=site: pods.ready(s), 90, f"{site}'s readiness probe")
        cluster.kubelet.run(f"{NAME}-site-{site}")
    cluster.wait_condition(NAME, "SitesReady", "True")

    submit = pods.start("submit", _pod_spec(cluster, "Job", f"{NAME}-submit"))
    role = submit.roles["submit"]
    wait_for(lambda: role.process.poll() is not None or server.newly_exited(), 240, "the run")
    code = role.process.returncode
    last = "\n".join(role.last_lines(20))
    # the kubelet passes the container's termination message on: the run's summary
    said = termination_message(pods.root / "pods" / "submit") or last
    log = role.log.read_text()
    cluster.kubelet.finish_job(f"{NAME}-submit", succeeded=code == 0, message=said, log=log)
    assert code == 0, last
    assert (last_progress(log) or {}).get("rounds") == 2  # what the operator reads live

    done = cluster.wait_condition(NAME, "Succeeded", "True")
    assert done["reason"] == "RunCompleted"
    status = cluster.status(NAME)
    assert status["results"] == {"claimName": "medfl-results", "path": f"default/{NAME}-{uid[:8]}"}
    result = json.loads(
        (pods.claims["medfl-results"] / status["results"]["path"] / "result.json").read_text()
    )
    assert (result["status"], len(result["rounds"])) == ("succeeded", 2)
    assert sorted(result["rounds"][-1]["sites"]) == ["cleveland", "hungary"]
    assert status["round"] == "2/2"
    assert status["metrics"]["auc"] == result["rounds"][-1]["metrics"]["auc"]
    assert "tp" not in status["metrics"]  # rates only: counts stay on the claim

    # medfl run --backend kubernetes's copy: result.json from the Job's log, as written
    user = UserSide(_api(), "default", NAME, uid)
    copied = copy_result(user, experiment_of(example_cr()), pods.root / "copy")
    assert copied is not None and json.loads(copied.read_text()) == result
