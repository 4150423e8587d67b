"""The operator for real: kopf runs medfl_operator in its own thread against kmock's
in-memory Kubernetes API over HTTP (tests/operator/emulator.py). The test plays the
user (experiments created, changed, deleted) and the kubelet and controllers (pods,
Deployment availability, Job outcomes), and reads the status the operator writes.

What this cannot prove (no real API server): admission and schema pruning, garbage
collection by owner references, RBAC, scheduling — see tests/cluster/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kmock._internal import parsing

from medfl.k8s import GROUP, PLURAL, crd_manifest
from tests.k8s.test_chart import render, rules
from tests.operator.cluster import SITE_NAMES, USER_AGENT, Cluster, wait_for
from tests.operator.conftest import example_cr
from tests.operator.emulator import Seen

SITES = ["cleveland", "hungary", "switzerland", "va-long-beach"]


SITES = SITE_NAMES
pytestmark = pytest.mark.usefixtures("one_at_a_time")


def test_an_experiment_gets_owned_children_and_runs_to_succeeded(cluster: Cluster) -> None:
    uid = cluster.experiment("study-a")["metadata"]["uid"]
    children = wait_for(
        lambda: len(cluster.children("study-a")) == 12 and cluster.children("study-a")
    )
    assert sorted((c["kind"], c["metadata"]["name"]) for c in children) == sorted(
        [
            ("Deployment", "study-a-server"),
            ("Service", "study-a-server"),
            ("ConfigMap", "study-a-spec"),
        ]
        + [("Secret", "study-a-tls")]
        + [("Deployment", f"study-a-site-{s}") for s in SITES]
        + [("Secret", f"study-a-key-{s}") for s in SITES]
    )
    for child in children:
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["kind"], ref["controller"]) == (uid, "FederatedExperiment", True)
    valid = cluster.wait_condition("study-a", "Valid", "True")
    assert valid["reason"] == "Validated"
    assert cluster.status("study-a")["phase"] == "Pending"
    assert cluster.condition("study-a", "ServerReady")["status"] == "False"  # type: ignore[index]

    cluster.kubelet.run("study-a-server")
    cluster.wait_condition("study-a", "ServerReady", "True")
    assert cluster.http.get("Job", "study-a-submit") is None  # not before the sites

    for site in SITES:
        cluster.kubelet.run(f"study-a-site-{site}")
    cluster.wait_condition("study-a", "SitesReady", "True")
    training = cluster.wait_condition("study-a", "Training", "True")
    assert training["reason"] == "Running"
    status = cluster.status("study-a")
    assert (status["phase"], status["sitesReady"], status["round"]) == ("Running", "4/4", "0/15")
    assert status["sites"]["hungary"] == {"state": "Online", "restarts": 0}

    cluster.kubelet.finish_job("study-a-submit", succeeded=True)
    done = cluster.wait_condition("study-a", "Succeeded", "True")
    assert done["reason"] == "RunCompleted"
    status = cluster.status("study-a")
    assert (status["phase"], status["round"]) == ("Succeeded", "15/15")
    assert status["completionTime"] == "2026-12-04T09:00:00Z"
    assert status["results"] == {"claimName": "medfl-results", "path": f"default/study-a-{uid[:8]}"}
    assert status["observedGeneration"] == 1
    # the sites' pods are stopped (their GPUs freed); the server keeps the results claim
    for site in SITES:
        wait_for(lambda s=site: _replicas(cluster, f"study-a-site-{s}") == 0, message=site)
    assert _replicas(cluster, "study-a-server") == 1
    assert cluster.status("study-a")["sites"]["hungary"]["state"] == "Finished"
    declared = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert set(status) <= set(declared["properties"]["status"]["properties"])  # no status.kopf


def test_while_the_run_goes_on_the_status_follows_the_jobs_progress_lines(
    cluster: Cluster,
) -> None:
    cluster.experiment("study-live")
    cluster.run_everything("study-live")
    cluster.wait_condition("study-live", "Training", "True")
    job = wait_for(lambda: cluster.http.get("Job", "study-live-submit"))
    pod = cluster.kubelet.start_pod(job, ready=True)
    said = {"rounds": 2, "metrics": {"auc": 0.7}, "privacySpent": {}}
    lines = ["INFO round 1", "medfl-progress " + json.dumps(said)]
    cluster.kubelet.logs[pod] = lambda: "\n".join(lines) + "\n"
    wait_for(lambda: cluster.status("study-live").get("round") == "2/15", message="round 2")
    said = {
        "rounds": 3,
        "metrics": {"auc": 0.75, "accuracy": 0.7},
        "privacySpent": {"hungary": {"epsilon": 0.41, "delta": 1e-05}},
    }
    lines += ["INFO round 3", "medfl-progress " + json.dumps(said)]
    wait_for(lambda: cluster.status("study-live").get("round") == "3/15", message="round 3")
    status = cluster.status("study-live")
    assert status["metrics"] == {"auc": 0.75, "accuracy": 0.7}
    assert status["privacySpent"] == {"hungary": {"epsilon": 0.41, "delta": 1e-05}}
    assert cluster.operator_requests("GET", f"/pods/{pod}/log")


def test_kopfs_liveness_endpoint_answers(cluster: Cluster) -> None:
    """The chart's livenessProbe asks this (kopf run --liveness): it answers once kopf
    has started (the first test of a worker may come before that)."""

    def answer() -> int | None:
        try:
            return int(urllib3.request("GET", cluster.liveness, timeout=5, retries=False).status)
        except urllib3.exceptions.HTTPError:
            return None

    assert wait_for(answer, 15, "kopf's liveness endpoint") == 200


def _replicas(cluster: Cluster, name: str) -> int:
    return int((cluster.http.get("Deployment", name) or {})["spec"]["replicas"])


def test_a_failing_run_ends_failed_with_the_submissions_reason(cluster: Cluster) -> None:
    cluster.experiment("study-b")
    cluster.run_everything("study-b")
    cluster.wait_condition("study-b", "Training", "True")
    said = "medfl: only 2 of 4 sites connected within 180 s"
    cluster.kubelet.finish_job("study-b-submit", succeeded=False, message=said)
    failed = cluster.wait_condition("study-b", "Failed", "True")
    assert (failed["reason"], failed["message"]) == ("RunFailed", said)
    assert cluster.status("study-b")["phase"] == "Failed"
    assert cluster.condition("study-b", "Succeeded")["status"] == "False"  # type: ignore[index]


def test_a_site_pod_that_dies_is_left_to_its_deployment(cluster: Cluster) -> None:
    cluster.experiment("study-c")
    cluster.run_everything("study-c")
    cluster.wait_condition("study-c", "SitesReady", "True")
    deployment = cluster.http.get("Deployment", "study-c-site-hungary")
    assert deployment is not None
    (dead,) = [
        p
        for p in cluster.http.list("Pod")
        if p["metadata"]["name"].startswith("study-c-site-hungary")
    ]

    # the pod dies; its replacement crashes for a while, then comes up
    cluster.http.delete("Pod", dead["metadata"]["name"])
    cluster.kubelet.available("study-c-site-hungary", ready=False)
    waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    cluster.kubelet.start_pod(deployment, ready=False, restarts=2, **waiting)
    sites_ready = cluster.wait_condition("study-c", "SitesReady", "False")
    assert sites_ready["reason"] == "SiteFailed"
    assert "hungary: CrashLoopBackOff: back-off 10s" in sites_ready["message"]
    assert cluster.status("study-c")["sites"]["hungary"]["restarts"] == 2
    cluster.kubelet.available("study-c-site-hungary")
    cluster.wait_condition("study-c", "SitesReady", "True")

    # the operator neither touched pods nor replaced the Deployment (it did write)
    assert cluster.operator_requests("PATCH", "/federatedexperiments/study-c/status") != []
    assert cluster.operator_requests("DELETE", "/pods") == []
    assert cluster.operator_requests("POST", "/pods") == []
    after = cluster.http.get("Deployment", "study-c-site-hungary")
    assert after is not None and after["metadata"]["uid"] == deployment["metadata"]["uid"]
    assert cluster.status("study-c")["phase"] == "Running"


def test_a_steady_experiment_costs_no_writes_and_a_deleted_child_is_put_back(
    cluster: Cluster,
) -> None:
    cluster.experiment("study-f")
    cluster.run_everything("study-f")
    cluster.wait_condition("study-f", "Training", "True")
    writes = len(cluster.operator_requests("PATCH", "/federatedexperiments/study-f/status"))
    time.sleep(1.0)  # three rounds of the status loop
    assert len(cluster.operator_requests("PATCH", "/federatedexperiments/study-f/status")) == writes

    cluster.http.delete("Deployment", "study-f-site-hungary")
    back = wait_for(lambda: cluster.http.get("Deployment", "study-f-site-hungary"), message="back")
    assert back["metadata"]["ownerReferences"][0]["name"] == "study-f"
    sites_ready = cluster.wait_condition("study-f", "SitesReady", "False")
    assert "hungary" in sites_ready["message"]


def test_an_invalid_spec_fails_without_children_and_is_not_retried(cluster: Cluster) -> None:
    sites = example_cr()["spec"]["sites"]
    cluster.experiment("bad", sites=[sites[0], sites[0]])
    valid = cluster.wait_condition("bad", "Valid", "False")
    assert valid["reason"] == "InvalidSpec"
    assert "site name(s) used twice: cleveland" in valid["message"]
    assert cluster.status("bad")["phase"] == "Failed"
    assert cluster.condition("bad", "Failed")["reason"] == "InvalidSpec"  # type: ignore[index]
    # kopf recorded the creation as handled (a PermanentError is not retried) and the
    # operator made nothing for it
    meta = wait_for(lambda: _handled(cluster, "bad"), message="bad handled")
    assert yaml.safe_load(meta["annotations"]["medfl.io/last-handled-spec"])["spec"]["sites"][1]
    assert cluster.children("bad") == []

    # corrected, it is reconciled like any other
    cluster.http.patch("FederatedExperiment", "bad", {"spec": {"sites": sites}})
    cluster.wait_condition("bad", "Valid", "True")
    wait_for(lambda: len(cluster.children("bad")) == 12, message="children of the corrected spec")
    assert cluster.status("bad")["observedGeneration"] == 2


def test_a_sites_policy_missing_from_the_namespace_holds_the_experiment_until_it_is_made(
    cluster: Cluster,
) -> None:
    sites = example_cr()["spec"]["sites"]
    sites = [sites[0], dict(sites[1], name="policy-site")]
    cluster.experiment("study-p", sites=sites)
    valid = cluster.wait_condition("study-p", "Valid", "False")
    assert (
        "site policy-site: its policy ConfigMap policy-site-policy is not in this namespace"
        in valid["message"]
    )
    assert cluster.children("study-p") == []

    policy = {"apiVersion": "v1", "kind": "ConfigMap"}
    policy["metadata"] = {"name": "policy-site-policy", "namespace": "default"}
    policy["data"] = {"policy.yaml": "disclosure:\n  minCellCount: 8\n"}  # type: ignore[assignment]
    cluster.http.create("ConfigMap", policy)
    cluster.wait_condition("study-p", "Valid", "True", timeout=15)
    site = wait_for(lambda: cluster.http.get("Deployment", "study-p-site-policy-site"))
    args = site["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--policy") + 1] == "/etc/medfl/policy/policy.yaml"


def test_a_search_on_ray_is_a_rayjob_followed_through_its_submitters_log(
    cluster: Cluster,
) -> None:
    space = {"training.learningRate": {"type": "float", "low": 0.01, "high": 0.5}}
    cluster.experiment("study-ray", tuning={"space": space, "trials": 4, "runOn": "ray"})
    ray_job = wait_for(lambda: cluster.http.get("RayJob", "study-ray-submit"), message="RayJob")
    assert ray_job["metadata"]["ownerReferences"][0]["name"] == "study-ray"
    assert ray_job["spec"]["clusterSelector"] == {"ray.io/cluster": "gpu-ray"}
    assert cluster.children("study-ray") == []  # no Flower server, no sites, no Secrets

    # KubeRay's part: the submitter Job's pod streams the search's output
    submitter = {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"}}
    submitter["metadata"] = {
        "name": "study-ray-submit-x1",
        "namespace": "default",
        "labels": {"job-name": "study-ray-submit"},
    }
    cluster.http.create("Pod", submitter)
    lines = ["medfl tune: 4 trials"]
    cluster.kubelet.logs["study-ray-submit-x1"] = lambda: "\n".join(lines) + "\n"
    running = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}
    running["startTime"] = "2026-12-04T09:00:00Z"
    cluster.http.patch("RayJob", "study-ray-submit", {"status": running}, status=True)
    assert cluster.wait_condition("study-ray", "Training", "True")["reason"] == "Running"
    assert cluster.condition("study-ray", "SitesReady")["reason"] == "NotUsed"  # type: ignore[index]

    said = {"rounds": 15, "metrics": {"auc": 0.83}, "privacySpent": {}}
    lines.append("medfl-progress " + json.dumps(said))  # the best run's, at the end
    done = dict(running, jobStatus="SUCCEEDED", jobDeploymentStatus="Complete")
    done["endTime"] = "2026-12-04T09:10:00Z"
    cluster.http.patch("RayJob", "study-ray-submit", {"status": done}, status=True)
    cluster.wait_condition("study-ray", "Succeeded", "True")
    status = cluster.status("study-ray")
    assert (status["phase"], status["round"], status["metrics"]) == (
        "Succeeded", "15/15", {"auc": 0.83},
    )  # fmt: skip
    assert "results" not in status  # the search's folder stays on the Ray head


def _handled(cluster: Cluster, name: str) -> dict[str, Any] | None:
    meta = (cluster.http.get("FederatedExperiment", name) or {}).get("metadata", {})
    return meta if "medfl.io/last-handled-spec" in (meta.get("annotations") or {}) else None


def test_a_spec_change_keeps_the_tls_material_and_is_observed(cluster: Cluster) -> None:
    cluster.experiment("study-d")
    before = wait_for(lambda: cluster.http.get("Secret", "study-d-tls"))
    key_before = wait_for(lambda: cluster.http.get("Secret", "study-d-key-hungary"))
    cluster.http.patch("FederatedExperiment", "study-d", {"spec": {"training": {"rounds": 20}}})
    wait_for(lambda: cluster.status("study-d").get("totalRounds") == 20, message="totalRounds 20")
    assert cluster.status("study-d")["observedGeneration"] == 2
    assert cluster.http.get("Secret", "study-d-tls")["data"] == before["data"]  # type: ignore[index]
    assert cluster.http.get("Secret", "study-d-key-hungary")["data"] == key_before["data"]  # type: ignore[index]
    server_args = cluster.http.get("Deployment", "study-d-server")
    assert server_args is not None


def test_deleting_an_experiment_releases_its_finalizer(cluster: Cluster) -> None:
    created = cluster.experiment("study-e")
    wait_for(lambda: cluster.condition("study-e", "Valid"), message="study-e reconciled")
    finalizers = cluster.http.get("FederatedExperiment", "study-e")["metadata"]["finalizers"]  # type: ignore[index]
    assert finalizers == ["medfl.io/operator"]
    cluster.http.delete("FederatedExperiment", "study-e")
    wait_for(lambda: cluster.http.get("FederatedExperiment", "study-e") is None, message="gone")
    # what remains is for the garbage collector: every child points at the deleted owner
    for child in cluster.children("study-e"):
        assert child["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]


def _verb(seen: Seen) -> str:
    if seen.method == "GET":
        return "watch" if seen.watch else ("get" if _name(seen.path) else "list")
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[seen.method]


def _name(path: str) -> str | None:
    return parsing.parse_path(path).name


def _resource(path: str) -> tuple[str, str] | None:
    parsed = parsing.parse_path(path)
    if parsed.group is None or parsed.plural is None:
        return None  # discovery (/api, /apis/GROUP/VERSION): every account may read it
    tail = f"/{parsed.subresource}" if parsed.subresource else ""
    return parsed.group, parsed.plural + tail


def test_every_call_the_operator_made_is_granted_by_the_charts_rbac(
    cluster: Cluster, tmp_path: Path
) -> None:
    """kopf's and the operator's own requests in this module, against the ClusterRoles
    the chart renders (a real API server would refuse anything else with 403)."""
    cluster.experiment("study-rbac")  # one whole life, whatever ran before
    cluster.run_everything("study-rbac")
    cluster.kubelet.finish_job("study-rbac-submit", succeeded=False, message="stopped")
    cluster.wait_condition("study-rbac", "Failed", "True")
    cluster.http.delete("FederatedExperiment", "study-rbac")
    wait_for(lambda: cluster.http.get("FederatedExperiment", "study-rbac") is None)
    objects = render(tmp_path)
    granted: dict[tuple[str, str], list[str]] = {}
    for role in ("medfl-operator", "medfl-framework"):
        for key, verbs in rules(objects[("ClusterRole", role)]).items():
            granted[key] = granted.get(key, []) + verbs
    assert cluster.server.emulator is not None
    used = {
        (resource, _verb(seen))
        for seen in cluster.server.emulator.log
        if seen.agent != USER_AGENT and (resource := _resource(seen.path)) is not None
    }
    assert ((GROUP, PLURAL + "/status"), "patch") in used
    refused = sorted((r, v) for r, v in used if v not in granted.get(r, []))
    assert refused == []
