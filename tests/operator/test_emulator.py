"""What the tests' emulated API server adds to kmock's, checked over HTTP: the parts of
a real API server that kopf and the operator rely on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.operator.cluster import NS, Http
from tests.operator.emulator import ApiServer


@pytest.fixture(scope="module")
def http() -> Iterator[Http]:
    with ApiServer() as server:
        yield Http(server.url)


def _deployment(name: str, labels: dict[str, str]) -> dict:  # type: ignore[type-arg]
    meta = {"name": name, "namespace": NS, "labels": labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"replicas": 1},
    }


def test_objects_get_a_uid_a_resource_version_and_a_generation(http: Http) -> None:
    meta = http.create("Deployment", _deployment("a", {}))["metadata"]
    assert meta["uid"] and meta["creationTimestamp"]
    assert meta["generation"] == 1
    version = int(meta["resourceVersion"])
    http.patch("Deployment", "a", {"status": {"availableReplicas": 1}}, status=True)
    after = (http.get("Deployment", "a") or {})["metadata"]
    assert (after["generation"], int(after["resourceVersion"]) > version) == (1, True)
    http.patch("Deployment", "a", {"spec": {"replicas": 2}})
    assert (http.get("Deployment", "a") or {})["metadata"]["generation"] == 2


def test_a_failed_json_patch_test_is_a_422_conflict(http: Http) -> None:
    http.create("Deployment", _deployment("b", {}))
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}]
    response = http.pool.request(
        "PATCH",
        f"{http.url}/apis/apps/v1/namespaces/{NS}/deployments/b",
        body=json.dumps(ops).encode(),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status == 422


def test_lists_honour_label_selectors_and_namespaces_are_listed(http: Http) -> None:
    http.create("Deployment", _deployment("c", {"medfl.io/site": "x"}))
    http.create("Deployment", _deployment("d", {"medfl.io/site": "y"}))
    code, listed = http._send(
        "GET", f"/apis/apps/v1/namespaces/{NS}/deployments?labelSelector=medfl.io/site%3Dx"
    )
    assert code == 200 and [o["metadata"]["name"] for o in listed["items"]] == ["c"]
    code, namespaces = http._send("GET", "/api/v1/namespaces")
    assert code == 200 and [n["metadata"]["name"] for n in namespaces["items"]] == [NS]


def test_pod_logs_are_served_as_text_with_tail_lines() -> None:
    with ApiServer() as server:
        http = Http(server.url)
        assert server.emulator is not None
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS}}
        http.create("Pod", pod)
        path = f"{http.url}/api/v1/namespaces/{NS}/pods/p/log"
        assert http.pool.request("GET", path).status == 400  # no log yet
        server.emulator.pod_logs["p"] = lambda: "one\ntwo\nthree\n"
        assert http.pool.request("GET", path).data == b"one\ntwo\nthree\n"
        assert http.pool.request("GET", path + "?tailLines=2").data == b"two\nthree\n"
        missing = f"{http.url}/api/v1/namespaces/{NS}/pods/nope/log"
        assert http.pool.request("GET", missing).status == 404
