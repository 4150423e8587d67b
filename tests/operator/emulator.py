"""kmock's in-memory Kubernetes API, extended where kopf and the operator need it, served
over HTTP from a thread of its own so synchronous tests (and kopf in another thread)
can talk to it.

What kmock 0.8 lacks, added here: ``uid``/``resourceVersion``/``generation``/
``creationTimestamp`` on objects, 422 on a failed JSON-patch test, watches that start
from the resourceVersion asked for (not a replay of everything), label selectors on
lists, and the discovery kopf waits for (``v1/namespaces``, the CRD, status subresource).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import enums, parsing, rendering

from medfl.k8s import GROUP, PLURAL, VERSION
from medfl.spec import KIND

NAMESPACE = "default"
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}
RESOURCES = {
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs=VERBS),
    "v1/pods": kmock.ResourceInfo(kind="Pod", namespaced=True, verbs=VERBS),
    "v1/services": kmock.ResourceInfo(kind="Service", namespaced=True, verbs=VERBS),
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True, verbs=VERBS),
    "v1/configmaps": kmock.ResourceInfo(kind="ConfigMap", namespaced=True, verbs=VERBS),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs=VERBS),
    "apps/v1/deployments": kmock.ResourceInfo(kind="Deployment", namespaced=True, verbs=VERBS),
    "batch/v1/jobs": kmock.ResourceInfo(kind="Job", namespaced=True, verbs=VERBS),
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
    ),
    "ray.io/v1/rayjobs": kmock.ResourceInfo(  # KubeRay's, for searches on Ray
        kind="RayJob", namespaced=True, verbs=VERBS, subresources={"status"}
    ),
    f"{GROUP}/{VERSION}/{PLURAL}": kmock.ResourceInfo(
        kind=KIND, singular=KIND.lower(), namespaced=True, verbs=VERBS, subresources={"status"}
    ),
}


_parse_path = parsing.parse_path


def _parse_namespaces(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads ``/api/v1/namespaces[/NAME]`` as a namespaced path missing its
    resource (and fails): it is the cluster-scoped Namespace resource."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        name = parts[3] if len(parts) == 4 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    return _parse_path(path)


parsing.parse_path = _parse_namespaces  # kmock's request parser looks it up per request


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    pairs = [term.split("=", 1) for term in selector.split(",") if term]
    return all(labels.get(k) == v for k, v in pairs)


_KEPT_REQUESTS = 20


@dataclass(frozen=True)
class Seen:
    """One request, as the tests look back at it."""

    method: str
    path: str
    agent: str
    watch: bool = False


PodLog = Callable[[], str]


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    log: list[Seen] = attrs.field(factory=list, init=False)
    # the kubelet's part of ``pods/NAME/log``: a pod's log, by pod name, as the test says
    pod_logs: dict[str, PodLog] = attrs.field(factory=dict, init=False)
    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    def _next_version(self) -> str:
        return str(next(self._versions))

    def _stamp_create(self, request: rendering.Request) -> None:
        meta = request.data.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1

    def _stamp_update(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return  # kmock answers 404
        current = self._objects[key].raw
        generation = (current.get("metadata") or {}).get("generation") or 1
        version = self._next_version()
        if isinstance(request.data, list):  # a JSON patch: its test ops are checked here
            try:
                jsonpatch.apply_patch(current, request.data)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message=str(exc)
                ) from None
            request.data.append(
                {"op": "add", "path": "/metadata/resourceVersion", "value": version}
            )
            return
        if request.subresource is None and "spec" in (request.data or {}):
            patched = jsonpatch.JsonPatch.from_diff(current.get("spec"), request.data["spec"])
            if patched or current.get("spec") is None:
                generation += 1
        meta = request.data.setdefault("metadata", {})
        meta["resourceVersion"] = version
        meta["generation"] = generation

    async def _handle(self, request: rendering.Request) -> Any:
        agent = request.headers.get("User-Agent", "")
        watch = request.params.get("watch") == "true"
        self.log.append(Seen(request.method.value, request.url.path, agent, watch))
        # kmock keeps every request and its filters walk them all on each new one, so
        # serving slows down as the test goes on: keep only the newest
        del self._requests[:-_KEPT_REQUESTS]
        if request.subresource == "log" and request.name is not None:
            return self._serve_log(request)
        if request.resource is not None and isinstance(request.data, dict | list):
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                self._stamp_create(request)
            elif request.action == enums.action.UPDATE and request.name is not None:
                self._stamp_update(request)
        return await super()._handle(request)

    def _serve_log(self, request: rendering.Request) -> aiohttp.web.Response:
        """A pod's log as the kubelet serves it: text, ``tailLines`` honoured; 404
        without the pod, 400 while it has no log (a container not started)."""
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return aiohttp.web.json_response({"kind": "Status", "code": 404}, status=404)
        found = self.pod_logs.get(str(request.name))
        if found is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 400}, status=400)
        lines = found().splitlines(keepends=True)
        tail = request.params.get("tailLines")
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) else []
        return aiohttp.web.Response(text="".join(lines))

    async def _serve_list(self, request: rendering.Request) -> Any:
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        payload["items"] = [o for o in payload["items"] if _selected(o, selector)]
        payload["metadata"]["resourceVersion"] = str(next(self._versions))
        return payload

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        """Events after the resourceVersion asked for (kopf lists first, then watches)."""
        since = int(request.params.get("resourceVersion") or 0)
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                version = int((event["object"].get("metadata") or {}).get("resourceVersion") or 0)
                if event["type"] == "ADDED" and version and version <= since:
                    continue
            yield event


class ApiServer:
    """The emulator on a loopback port, its event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.emulator: Emulator | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="kmock")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator() as emulator, kmock.Server(emulator) as server:
            for key, info in RESOURCES.items():
                emulator.resources[key] = info
            # kopf serves a namespace only once it has seen the Namespace object
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            emulator.objects[kmock.resource("v1/namespaces"), None, NAMESPACE] = namespace
            self.emulator, self.url = emulator, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ApiServer:
        # one line per request, from a thread that outlives pytest's captured streams
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextmanager
def api_server() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server
