"""The test's side of the emulated cluster: a plain HTTP client for playing the user
(create, patch, delete experiments) and the kubelet and controllers (pods, Deployment
availability, Job outcomes), which the emulator does not run."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3

from medfl.k8s import GROUP, PLURAL, VERSION
from tests.operator.conftest import example_cr
from tests.operator.emulator import ApiServer, Seen

NS = "default"
SITE_NAMES = ["cleveland", "hungary", "switzerland", "va-long-beach"]
T = TypeVar("T")
_PATHS = {
    "FederatedExperiment": f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}",
    "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments",
    "Job": f"/apis/batch/v1/namespaces/{NS}/jobs",
    "Pod": f"/api/v1/namespaces/{NS}/pods",
    "Secret": f"/api/v1/namespaces/{NS}/secrets",
    "Service": f"/api/v1/namespaces/{NS}/services",
    "ConfigMap": f"/api/v1/namespaces/{NS}/configmaps",
    "RayJob": f"/apis/ray.io/v1/namespaces/{NS}/rayjobs",
}
USER_AGENT = "medfl-tests"  # tells the test's own requests from the operator's


class Http:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = urllib3.PoolManager()

    def _send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
        headers = {"Content-Type": kind, "User-Agent": USER_AGENT}
        data = json.dumps(body).encode() if body is not None else None
        response = self.pool.request(method, self.url + path, body=data, headers=headers)
        return response.status, json.loads(response.data or b"null")

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        status, obj = self._send("GET", f"{_PATHS[kind]}/{name}")
        return obj if status == 200 else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        return list(self._send("GET", _PATHS[kind])[1]["items"])

    def create(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        status, out = self._send("POST", _PATHS[kind], obj)
        assert status in (200, 201), out
        return dict(out)

    def patch(self, kind: str, name: str, body: dict[str, Any], status: bool = False) -> None:
        code, out = self._send(
            "PATCH", f"{_PATHS[kind]}/{name}" + ("/status" if status else ""), body
        )
        assert code == 200, out

    def delete(self, kind: str, name: str) -> None:
        code, out = self._send("DELETE", f"{_PATHS[kind]}/{name}")
        assert code == 200, out


def wait_for(what: Callable[[], T | None], timeout: float = 10.0, message: str = "") -> T:
    """Until ``what()`` gives something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or what}")
        time.sleep(0.05)


class Kubelet:
    """What the kubelet and the Deployment and Job controllers would do, on request."""

    def __init__(self, http: Http, logs: dict[str, Callable[[], str]] | None = None) -> None:
        self.http = http
        self.pods = 0
        self.logs = {} if logs is None else logs  # pod name -> its log (the emulator's)

    def start_pod(self, owner: dict[str, Any], ready: bool = True, **state: Any) -> str:
        """A pod of a Deployment or Job, with its template's labels."""
        self.pods += 1
        labels = dict(owner["spec"]["template"]["metadata"]["labels"])
        if owner["kind"] == "Job":
            labels["job-name"] = owner["metadata"]["name"]
        name = f"{owner['metadata']['name']}-{self.pods:05d}"
        container = {"name": "main", "ready": ready, "restartCount": state.pop("restarts", 0)}
        container["state"] = state or {"running": {"startedAt": "2026-12-04T08:00:00Z"}}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
        }
        pod["status"] = {"phase": "Running", "containerStatuses": [container]}
        self.http.create("Pod", pod)
        return name

    def available(self, name: str, ready: bool = True) -> None:
        """The Deployment's pod runs (or no longer does) and it says so."""
        count = 1 if ready else 0
        status = {"replicas": 1, "readyReplicas": count, "availableReplicas": count}
        self.http.patch("Deployment", name, {"status": status}, status=True)

    def run(self, name: str) -> dict[str, Any]:
        deployment = wait_for(lambda: self.http.get("Deployment", name), message=name)
        self.start_pod(deployment)
        self.available(name)
        return deployment

    def finish_job(self, name: str, succeeded: bool, message: str = "", log: str = "") -> None:
        job = wait_for(lambda: self.http.get("Job", name), message=name)
        code = 0 if succeeded else 4
        pod = self.start_pod(job, ready=False, terminated={"exitCode": code, "message": message})
        self.logs[pod] = lambda: log
        kind = "Complete" if succeeded else "Failed"
        cond = {"type": kind, "status": "True", "lastTransitionTime": "2026-12-04T09:00:00Z"}
        status: dict[str, Any] = {"startTime": "2026-12-04T08:10:00Z", "conditions": [cond]}
        if succeeded:
            status["completionTime"] = "2026-12-04T09:00:00Z"
        else:
            cond.update(
                reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"
            )
        self.http.patch("Job", name, {"status": status}, status=True)


@dataclass
class Cluster:
    server: ApiServer
    http: Http
    kubelet: Kubelet
    made: list[str] = field(default_factory=list)
    liveness: str = ""

    def experiment(self, name: str, **spec: Any) -> dict[str, Any]:
        self.made.append(name)
        cr = example_cr()
        cr["metadata"] = {"name": name, "namespace": NS}
        cr["spec"].update(copy.deepcopy(spec))
        return self.http.create("FederatedExperiment", cr)

    def status(self, name: str) -> dict[str, Any]:
        obj = self.http.get("FederatedExperiment", name) or {}
        return dict(obj.get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        found = [c for c in self.status(name).get("conditions", []) if c["type"] == kind]
        return found[0] if found else None

    def wait_condition(self, name: str, kind: str, status: str, timeout: float = 10.0):
        def check() -> dict[str, Any] | None:
            cond = self.condition(name, kind)
            return cond if cond and cond["status"] == status else None

        return wait_for(check, timeout, f"{name}: {kind}={status} (status: {self.status(name)})")

    def children(self, name: str) -> list[dict[str, Any]]:
        kinds = ("Deployment", "Service", "Secret", "ConfigMap", "Job")
        items = [o for kind in kinds for o in self.http.list(kind)]
        return [
            o
            for o in items
            if (o["metadata"].get("labels") or {}).get("medfl.io/experiment") == name
        ]

    def run_everything(self, name: str) -> None:
        for deployment in [f"{name}-server", *(f"{name}-site-{s}" for s in SITE_NAMES)]:
            self.kubelet.run(deployment)

    def operator_requests(self, method: str, fragment: str) -> list[Seen]:
        assert self.server.emulator is not None
        return [
            seen
            for seen in list(self.server.emulator.log)
            if seen.method == method and fragment in seen.path and seen.agent != USER_AGENT
        ]
