"""Runs: launched on the fast engine in the service's worker, followed as Server-Sent
Events (one per round, global and per-site metrics), cancelled, their results and
artifacts downloaded."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from medfl.api import create_app
from tests.api.conftest import AUTH, DEMO_SITES, create, events, heart_spec, launch, wait_for


def test_a_run_streams_one_event_per_round_and_ends_with_the_result_json_figures(client):
    run_id = launch(client, create(client, heart_spec(rounds=3)))
    stream = events(client, run_id)
    rounds = [data for event, data in stream if event == "round"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(sorted(r["sites"]) == DEMO_SITES for r in rounds)
    assert all(r["sites"]["hungary"]["status"] == "ok" for r in rounds)
    assert stream[-1][0] == "end"
    assert stream[-1][1]["status"] == "succeeded"
    assert stream[-1][1]["roundsDone"] == 3
    result = client.get(f"/api/runs/{run_id}/result").json()
    for streamed, recorded in zip(rounds, result["rounds"], strict=True):
        assert streamed["metrics"] == recorded["metrics"]
        assert (
            streamed["sites"]["cleveland"]["metrics"] == recorded["sites"]["cleveland"]["metrics"]
        )
    assert result["status"] == "succeeded"
    assert 0.5 < result["final"]["metrics"]["accuracy"] < 1


def test_last_event_id_resumes_the_stream_after_that_round(client):
    run_id = launch(client, create(client, heart_spec(rounds=3)))
    wait_for(client, run_id, lambda r: r["status"] == "succeeded")
    resumed = events(client, run_id, **{"Last-Event-ID": "2"})
    assert [d["round"] for e, d in resumed if e == "round"] == [3]


def test_the_run_folders_downloads_are_listed_and_only_those_are_served(client):
    run_id = launch(client, create(client, heart_spec(rounds=2)))
    wait_for(client, run_id, lambda r: r["status"] == "succeeded")
    names = [a["name"] for a in client.get(f"/api/runs/{run_id}/artifacts").json()]
    assert names == [
        "curves.png", "model.npz", "model.pt", "preprocessing.json", "report.md", "result.json",
    ]  # fmt: skip
    report = client.get(f"/api/runs/{run_id}/artifacts/report.md")
    assert report.headers["content-type"] == "text/markdown; charset=utf-8"
    assert report.text.startswith("# heart-disease")
    plot = client.get(f"/api/runs/{run_id}/artifacts/curves.png")
    assert plot.content[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("experiment.yaml", "..%2Fmedfl.db", "checkpoint.npz", ".result.json"):
        response = client.get(f"/api/runs/{run_id}/artifacts/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"


def test_runs_are_listed_by_experiment(client):
    first = create(client, heart_spec(rounds=1))
    second = create(client, heart_spec(rounds=1, name="second"))
    run_id = launch(client, first)
    wait_for(client, run_id, lambda r: r["status"] == "succeeded")
    assert [r["id"] for r in client.get("/api/runs").json()] == [run_id]
    assert client.get("/api/runs", params={"experimentId": second}).json() == []
    mine = client.get("/api/runs", params={"experimentId": first}).json()
    assert [(r["experimentName"], r["roundsDone"], r["totalRounds"]) for r in mine] == [
        ("heart-disease", 1, 1)
    ]
    rounds = client.get(f"/api/runs/{run_id}/rounds").json()
    assert [r["round"] for r in rounds] == [1]


def test_a_cancelled_run_stops_after_its_round_and_keeps_the_finished_rounds(client):
    experiment_id = create(client, heart_spec(rounds=2000))
    run_id = launch(client, experiment_id)
    wait_for(client, run_id, lambda r: r["roundsDone"] >= 1)
    busy = client.delete(f"/api/experiments/{experiment_id}")
    assert busy.status_code == 409
    assert busy.json()["detail"].startswith(f"experiment {experiment_id!r} has a run in flight")
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    run = wait_for(client, run_id, lambda r: r["status"] == "cancelled")
    assert 1 <= run["roundsDone"] < 2000
    assert run["error"] == f"cancelled after round {run['roundsDone']}; its rounds are kept"
    result = client.get(f"/api/runs/{run_id}/result").json()
    assert result["status"] == "failed"
    assert len(result["rounds"]) == run["roundsDone"]
    again = client.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"run {run_id!r} already ended (cancelled)"


def test_launch_refuses_an_unknown_experiment_a_disabled_backend_and_a_bad_one(client):
    response = client.post("/api/experiments/nope/runs", json={})
    assert (response.status_code, response.json()["detail"]) == (404, "no experiment 'nope'")
    experiment_id = create(client, heart_spec())
    assert client.get("/api/backends").json() == ["fast"]
    disabled = client.post(f"/api/experiments/{experiment_id}/runs", json={"backend": "kubernetes"})
    assert disabled.status_code == 409
    assert disabled.json()["detail"] == (
        "backend 'kubernetes' is not enabled on this service (enabled: fast)"
    )
    bad = client.post(f"/api/experiments/{experiment_id}/runs", json={"backend": "gpu"})
    assert bad.status_code == 422
    assert bad.json()["errors"] == [
        {"field": "backend", "in": "body", "message": "Input should be 'fast' or 'kubernetes'"}
    ]


def test_an_unknown_run_is_not_found_on_every_run_endpoint(client):
    for path in ("", "/rounds", "/events", "/result", "/artifacts", "/artifacts/report.md"):
        response = client.get(f"/api/runs/nope{path}")
        assert response.status_code == 404, path
        assert response.json()["detail"] == "no run 'nope'"
    for action in ("cancel", "resume"):
        response = client.post(f"/api/runs/nope/{action}")
        assert (response.status_code, response.json()["detail"]) == (404, "no run 'nope'")


def test_a_service_stopping_mid_run_marks_it_interrupted_with_its_rounds_kept(settings):
    with TestClient(create_app(settings), headers=AUTH) as client:
        run_id = launch(client, create(client, heart_spec(rounds=2000)))
        wait_for(client, run_id, lambda r: r["roundsDone"] >= 2)
    # the app stopped (its lifespan ended); a new one on the same data directory
    with TestClient(create_app(settings), headers=AUTH) as client:
        run = client.get(f"/api/runs/{run_id}").json()
        rounds = client.get(f"/api/runs/{run_id}/rounds").json()
    assert run["status"] == "interrupted"
    assert (
        run["error"]
        == "the service stopped while the run was in flight; its finished rounds are kept"
    )
    assert run["roundsDone"] >= 2
    assert [r["round"] for r in rounds] == list(range(1, run["roundsDone"] + 1))
    assert json.dumps(rounds[0]["metrics"]).startswith('{"loss"')


def test_a_cancelled_run_resumes_from_its_checkpoint_to_the_end(client):
    run_id = launch(client, create(client, heart_spec(rounds=40)))
    wait_for(client, run_id, lambda r: r["roundsDone"] >= 1)
    client.post(f"/api/runs/{run_id}/cancel")
    stopped = wait_for(client, run_id, lambda r: r["status"] == "cancelled")
    assert stopped["roundsDone"] < 40
    resumed = client.post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 200
    assert (resumed.json()["status"], resumed.json()["resumes"]) == ("queued", 1)
    done = wait_for(client, run_id, lambda r: r["status"] == "succeeded")
    assert (done["roundsDone"], done["error"]) == (40, None)
    rounds = client.get(f"/api/runs/{run_id}/rounds").json()
    assert [r["round"] for r in rounds] == list(range(1, 41))
    result = client.get(f"/api/runs/{run_id}/result").json()
    assert result["status"] == "succeeded"
    assert [r["metrics"] for r in result["rounds"]] == [r["metrics"] for r in rounds]
    again = client.post(f"/api/runs/{run_id}/resume")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"run {run_id!r} is succeeded on fast: only an interrupted or cancelled run of the "
        "fast backend can be resumed"
    )


def test_a_secure_aggregation_spec_is_refused_on_the_fast_backend_before_a_run_exists(client):
    spec = heart_spec()
    spec["privacy"] = {"secureAggregation": {"enabled": True}}
    experiment_id = create(client, spec)

    refused = client.post(f"/api/experiments/{experiment_id}/runs", json={})

    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "privacy.secureAggregation: the fast backend runs every site in this service's "
        "process, and SecAgg+ needs Flower's messages: launch it on the kubernetes backend"
    )
    assert client.get("/api/runs").json() == []
