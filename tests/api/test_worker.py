"""The run worker's part for the kubernetes backend: a FederatedExperiment's status
becomes the run's phase and a round row per new currentRound (its global metrics)."""

from __future__ import annotations

from medfl.api._db import RoundRow, RunRow
from tests.api.conftest import create


def test_a_clusters_status_moves_the_runs_phase_and_adds_its_rounds(client):
    service = client.app.state.service  # type: ignore[attr-defined]
    experiment_id = create(client, {"name": "k", "sites": ["cleveland"], "schema": {
        "target": {"column": "num", "positiveAbove": 0}, "numeric": ["age"]}})  # fmt: skip
    with service.db.session() as session:
        session.add(
            RunRow(id="r1", experiment_id=experiment_id, backend="kubernetes", status="running",
                   total_rounds=3, cancel_requested=False)
        )  # fmt: skip
    worker = service.worker
    worker._follow("r1", {"phase": "Pending"})
    worker._follow("r1", {"phase": "Running", "currentRound": 1, "metrics": {"accuracy": 0.7}})
    worker._follow("r1", {"phase": "Running", "currentRound": 1, "metrics": {"accuracy": 0.7}})
    worker._follow("r1", {"phase": "Running", "currentRound": 2, "metrics": {"accuracy": 0.75}})
    run = client.get("/api/runs/r1").json()
    assert (run["phase"], run["roundsDone"]) == ("Running", 2)
    rounds = client.get("/api/runs/r1/rounds").json()
    assert [(r["round"], r["metrics"]) for r in rounds] == [
        (1, {"accuracy": 0.7}), (2, {"accuracy": 0.75}),
    ]  # fmt: skip
    with service.db.session() as session:
        assert session.get(RoundRow, ("r1", 2)).sites == {}
