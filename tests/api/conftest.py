"""A service on a temporary data directory, the heart-disease demo's four hospitals
served, and the example experiment with its sites named."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from medfl.api import Settings, create_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "heart-disease" / "experiment.yaml"
TOKEN = "t0k3n-for-the-api-tests-only"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEMO_SITES = ["cleveland", "hungary", "switzerland", "va-long-beach"]


def heart_spec(rounds: int = 3, **changes: Any) -> dict[str, Any]:
    """The example, its sites by name, fewer rounds and no baselines (fast tests)."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["sites"] = [s["name"] for s in spec["sites"]]
    spec["training"]["rounds"] = rounds
    spec["evaluation"]["baselines"] = []
    return spec | changes


# MEDFL_TEST_DATABASE_URL=postgresql+psycopg://... runs these tests on that (emptied)
# database instead of a SQLite file; unset, SQLite.
DATABASE_URL = os.environ.get("MEDFL_TEST_DATABASE_URL")


def _emptied(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        for table in ("rounds", "runs", "experiments", "alembic_version"):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = _emptied(DATABASE_URL) if DATABASE_URL else None
    return Settings(data_dir=tmp_path / "data", api_token=TOKEN, database_url=url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=AUTH) as c:
        yield c


def create(client: TestClient, spec: dict[str, Any]) -> str:
    response = client.post("/api/experiments", json={"spec": spec})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def launch(client: TestClient, experiment_id: str) -> str:
    response = client.post(f"/api/experiments/{experiment_id}/runs", json={"backend": "fast"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def events(client: TestClient, run_id: str, **headers: str) -> list[tuple[str, dict]]:
    """Every event of a run's stream until it closes, as (event, data)."""
    found, event = [], ""
    with client.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((event, json.loads(line.removeprefix("data: "))))
    return found


def wait_for(client: TestClient, run_id: str, done: Any, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if done(run):
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not get there: {run}")
