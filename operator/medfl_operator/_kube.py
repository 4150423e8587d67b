"""The few calls the operator makes, over the official ``kubernetes`` client.

Objects travel as plain dicts (what the renderers make, what the API server sends):
reads ask for the raw JSON, so nothing depends on the client's typed models.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from medfl.k8s import GROUP, PLURAL, VERSION

Manifest = dict[str, Any]
FIELD_MANAGER = "medfl-operator"

# kind -> (API class, the method name's tail)
_KINDS = {
    "Deployment": (client.AppsV1Api, "namespaced_deployment"),
    "Service": (client.CoreV1Api, "namespaced_service"),
    "ConfigMap": (client.CoreV1Api, "namespaced_config_map"),
    "Secret": (client.CoreV1Api, "namespaced_secret"),
    "Job": (client.BatchV1Api, "namespaced_job"),
    "Pod": (client.CoreV1Api, "namespaced_pod"),
}


# custom resources the operator makes: kind -> (group, version, plural)
_CUSTOM = {"RayJob": ("ray.io", "v1", "rayjobs")}


def _raw(response: Any) -> Manifest:
    data: Manifest = json.loads(response.data)
    return data


class Kube:
    """One API client; the handlers share it (kopf runs sync handlers in threads, and
    the client's connection pool is thread-safe)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _call(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> Any:
        if kind in _CUSTOM:  # (name,) namespace[, body]: the custom objects' order
            api, (group, version, plural) = client.CustomObjectsApi(self.api), _CUSTOM[kind]
            method = getattr(api, f"{'get' if verb == 'read' else verb}_namespaced_custom_object")
            if verb == "create":
                namespace, body = args
                return method(group, version, namespace, plural, body, _preload_content=False)
            name, namespace = args
            return method(group, version, namespace, plural, name, _preload_content=False)
        cls, tail = _KINDS[kind]
        method = getattr(cls(self.api), f"{verb}_{tail}")
        return method(*args, _preload_content=False, **kwargs)

    def apply(self, manifest: Manifest) -> None:
        """Server-side apply: the object becomes what the operator renders (fields it
        rendered before and no longer does are removed); one that is missing is created."""
        meta = manifest["metadata"]
        try:
            self._call(
                manifest["kind"],
                "patch",
                meta["name"],
                meta["namespace"],
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            if exc.status != 404:  # a real server creates on apply; simpler ones say 404
                raise
            self.create(manifest)

    def create(self, manifest: Manifest) -> bool:
        """Create it; False when it exists already (kept as it is)."""
        try:
            self._call(manifest["kind"], "create", manifest["metadata"]["namespace"], manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return False
        return True

    def read(self, kind: str, namespace: str, name: str) -> Manifest | None:
        try:
            return _raw(self._call(kind, "read", name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[Manifest]:
        """Objects carrying all of ``labels`` (checked here as well as by the server)."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        items = _raw(self._call(kind, "list", namespace, label_selector=selector))["items"]
        return [o for o in items if labels.items() <= (o["metadata"].get("labels") or {}).items()]

    def pod_log(self, namespace: str, name: str, tail_lines: int) -> str:
        """The last lines of a pod's log; empty when there is none (yet, or any more)."""
        try:
            response: Any = client.CoreV1Api(self.api).read_namespaced_pod_log(
                name, namespace, tail_lines=tail_lines, _preload_content=False
            )
        except ApiException as exc:
            if exc.status in (400, 404):  # a container not started yet answers 400
                return ""
            raise
        return str(response.data.decode(errors="replace"))

    def patch_status(self, namespace: str, name: str, status: Manifest) -> None:
        """A JSON merge patch of the experiment's status subresource."""
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )
