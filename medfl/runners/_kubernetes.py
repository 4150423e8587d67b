"""``--backend kubernetes``: the experiment becomes a ``FederatedExperiment`` in the
current kube context; the operator (``medfl_operator``) runs it and this follows its
status to the end. The run folder stays on the cluster's results claim (the status
names it); ``copy_command`` says how to fetch it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medfl.errors import TrainingError, UsageError
from medfl.k8s import GROUP, PLURAL, VERSION
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
    return client.CustomObjectsApi(client.ApiClient())


def context_namespace() -> str:
    from kubernetes import config

    _, active = config.list_kube_config_contexts()
    return str((active or {}).get("context", {}).get("namespace") or "default")


@dataclass
class Cluster:
    """One experiment on the cluster, followed by polling its status."""

    api: Any
    namespace: str
    name: str

    def create(self, experiment: Experiment) -> None:
        from kubernetes.client.exceptions import ApiException

        body = manifest(experiment, self.namespace)
        try:
            self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
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

    def status(self) -> Status:
        obj = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        return dict(obj.get("status") or {})

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
    # the operator's name for the server (medfl_operator._names.Owner.server)
    base = cluster.name if cluster.name[0].isalpha() else f"fe-{cluster.name}"
    server = f"deploy/{base}-server"
    return (
        f"mkdir -p runs/{cluster.name} && kubectl -n {cluster.namespace} exec {server} -- "
        f"tar cf - -C {source} . | tar xf - -C runs/{cluster.name}"
    )
