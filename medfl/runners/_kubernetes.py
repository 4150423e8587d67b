"""``--backend kubernetes``: the experiment becomes a ``FederatedExperiment`` in the
current kube context; the operator (``medfl_operator``) runs it and this follows its
status to the end, then copies result.json from the submission Job's log (where
medfl_operator._job leaves it) into a local run folder, with the report and plots made
from it. The whole run folder (the model too) stays on the cluster's results claim;
``copy_command`` says how to fetch it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfl.errors import TrainingError, UsageError
from medfl.k8s import GROUP, PLURAL, VERSION
from medfl.k8s._joblog import read_result
from medfl.k8s._names import Owner
from medfl.results import RunResult, RunStore, write_outputs
from medfl.spec import API_VERSION, KIND, Experiment

Status = dict[str, Any]
FINISHED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class KubernetesBackend:
    namespace: str | None = None  # None: the kube context's namespace (else "default")
    poll_s: float = 2.0
    name: str = "kubernetes"


def manifest(experiment: Experiment, namespace: str) -> dict[str, Any]:
    """The custom resource: the validated spec, defaults filled in."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": experiment.name, "namespace": namespace},
        "spec": experiment.to_wire(),
    }


def _api() -> Any:
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):  # in a pod (the chart's API): its account
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


def context_namespace() -> str:
    from kubernetes import config

    _, active = config.list_kube_config_contexts()
    return str((active or {}).get("context", {}).get("namespace") or "default")


@dataclass
class Cluster:
    """One experiment on the cluster, followed by polling its status."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str
    name: str
    uid: str = ""  # once created

    def _objects(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    @property
    def owner(self) -> Owner:
        return Owner(self.name, self.namespace, self.uid)

    def create(self, experiment: Experiment) -> None:
        from kubernetes.client.exceptions import ApiException

        body = manifest(experiment, self.namespace)
        try:
            made = self._objects().create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
        except ApiException as exc:
            if exc.status == 409:
                raise UsageError(
                    f"a {KIND} named {self.name!r} exists in namespace {self.namespace!r}: "
                    f"delete it (kubectl -n {self.namespace} delete fedexp {self.name}) or "
                    "rename the experiment"
                ) from None
            raise UsageError(
                f"the cluster refused the experiment: {exc.reason} {exc.body}"
            ) from None
        self.uid = str((made or self._read())["metadata"]["uid"])

    def _read(self) -> dict[str, Any]:
        return dict(
            self._objects().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        )

    def status(self) -> Status:
        return dict(self._read().get("status") or {})

    def submission_log(self) -> str:
        """The log of the submission Job's newest pod; empty when there is none."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api)
        selector = f"job-name={self.owner.submit_job}"
        listed: Any = core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False
        )
        pods = [p["metadata"] for p in json.loads(listed.data)["items"]]
        if not pods:
            return ""
        newest = max(pods, key=lambda meta: str(meta.get("creationTimestamp") or ""))
        try:
            response: Any = core.read_namespaced_pod_log(
                newest["name"], self.namespace, _preload_content=False
            )
        except ApiException:
            return ""
        return str(response.data.decode(errors="replace"))

    def follow(self, poll_s: float, changed: Callable[[Status], None]) -> Status:
        """Until the phase is Succeeded or Failed; ``changed`` sees each new status."""
        last: Status = {}
        while True:
            status = self.status()
            if status != last:
                changed(status)
                last = status
            if status.get("phase") in FINISHED:
                return status
            time.sleep(poll_s)


def submit(experiment: Experiment, backend: KubernetesBackend) -> Cluster:
    namespace = backend.namespace or context_namespace()
    cluster = Cluster(_api(), namespace, experiment.name)
    cluster.create(experiment)
    return cluster


def condition(status: Status, kind: str) -> Status:
    found = [c for c in status.get("conditions") or [] if c.get("type") == kind]
    return dict(found[0]) if found else {}


def outcome(status: Status) -> None:
    """Raise the reason of a failed experiment (the operator's Failed condition)."""
    if status.get("phase") != "Failed":
        return
    failed = condition(status, "Failed")
    reason = failed.get("message") or failed.get("reason") or "the experiment failed"
    raise TrainingError(f"the experiment failed on the cluster: {reason}")


def copy_command(cluster: Cluster, status: Status) -> str | None:
    """How to fetch the run folder (result.json and the rest) from the results claim,
    through the server pod that mounts it."""
    results = status.get("results") or {}
    if not results.get("path"):
        return None
    source = f"/results/{results['path']}"
    server = f"deploy/{cluster.owner.server}"
    return (
        f"mkdir -p runs/{cluster.name} && kubectl -n {cluster.namespace} exec {server} -- "
        f"tar cf - -C {source} . | tar xf - -C runs/{cluster.name}"
    )


def copy_result(cluster: Cluster, experiment: Experiment, out: Path) -> Path | None:
    """result.json from the submission's log into the run folder ``out``, with the
    report and plots made from it; None when the log does not hold it (a run that never
    started, a log the cluster no longer keeps)."""
    found = read_result(cluster.submission_log())
    if found is None:
        return None
    store = RunStore(out)
    store.create(experiment)
    store.save_result(RunResult.model_validate(found))
    write_outputs(store, experiment)
    return out / "result.json"
