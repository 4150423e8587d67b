"""``medfl serve`` as a process: killed (SIGKILL) in the middle of a run, the next
start marks the run interrupted and keeps its finished rounds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from medfl.api import Settings, create_app
from tests.api.conftest import AUTH, TOKEN, heart_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data_dir: Path, port: int, url: str | None) -> subprocess.Popen:
    env = {**os.environ, "MEDFL_API_TOKEN": TOKEN, "FLWR_TELEMETRY_ENABLED": "0"}
    if url:
        env["MEDFL_DATABASE_URL"] = url
    command = [
        sys.executable,
        "-m",
        "medfl",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def _until(check, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_killed_service_marks_its_run_interrupted_at_the_next_start(settings: Settings):
    port, data = _free_port(), settings.data_dir
    server = _serve(data, port, settings.database_url)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=10)
        _until(lambda: api.get("/api/health").status_code == 200)
        experiment = api.post("/api/experiments", json={"spec": heart_spec(rounds=5000)}).json()
        run = api.post(f"/api/experiments/{experiment['id']}/runs", json={}).json()
        _until(lambda: api.get(f"/api/runs/{run['id']}").json()["roundsDone"] >= 3)
        assert api.get(f"/api/runs/{run['id']}").json()["status"] == "running"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    assert "medfl serve: open http://127.0.0.1:" in server.stderr.read()  # type: ignore[union-attr]
    with TestClient(create_app(settings), headers=AUTH) as client:
        after = client.get(f"/api/runs/{run['id']}").json()
        rounds = client.get(f"/api/runs/{run['id']}/rounds").json()
        result = client.get(f"/api/runs/{run['id']}/result").json()
    assert after["status"] == "interrupted"
    assert (result["status"], result["errorKind"]) == ("failed", "interrupted")
    # result.json is written before the round's row: it may hold one round more
    assert len(result["rounds"]) in (after["roundsDone"], after["roundsDone"] + 1)
    assert after["roundsDone"] >= 3
    assert [r["round"] for r in rounds] == list(range(1, after["roundsDone"] + 1))
    assert after["finishedAt"] is not None
