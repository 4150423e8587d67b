"""The web service's cost: a run launched through the API (``medfl serve``) against the
same run called directly, and how late the live events arrive.

The workload is the heart-disease example (4 hospitals, logistic regression, FedAvg,
15 rounds, local and pooled baselines: what the page's form creates). Measured in this
one run, ``--repeats`` times each (median):

  (a) ``medfl.run(experiment)`` in this process, the baseline;
  (b) the same experiment through the API: the service (uvicorn, on loopback, in a thread
      of this process) is sent ``POST /api/experiments`` and ``POST .../runs``, and the
      client reads the run's Server-Sent Events until ``end``: seconds from the create
      request to the end event.

Reported: (b) / (a); the delay from the run's ``finishedAt`` (the service's clock) to the
client receiving ``end`` (same machine, same clock); and whether (b)'s test accuracy
equals (a)'s exactly (the service runs the same engine). Targets: (b)/(a) at most 1.5,
the end event within 0.5 s (the stream polls the database every 0.2 s).

Run: .venv/bin/python bench/api.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import uvicorn
import yaml
from pydantic import SecretStr

from medfl import load_experiment, run
from medfl.api import Settings, create_app

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "experiment.yaml"
TOKEN = "bench-token-0123456789abcdef"


def direct(out: Path) -> tuple[float, float]:
    started = time.perf_counter()
    outcome = run(load_experiment(EXAMPLE), out=out)
    assert outcome.result.final is not None
    return time.perf_counter() - started, float(outcome.result.final.metrics["accuracy"] or 0)


def _serve(data: Path) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(data_dir=data, api_token=SecretStr(TOKEN)))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def through_api(base: str) -> tuple[float, float, float]:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["sites"] = [s["name"] for s in spec["sites"]]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        started = time.perf_counter()
        experiment = client.post("/api/experiments", json={"spec": spec}).json()
        launched = client.post(f"/api/experiments/{experiment['id']}/runs", json={}).json()
        end = None
        with client.stream("GET", f"/api/runs/{launched['id']}/events") as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "end":
                    end = json.loads(line.removeprefix("data: "))
                    received = time.time()
        seconds = time.perf_counter() - started
        assert end is not None and end["status"] == "succeeded", end
        delay = received - datetime.fromisoformat(end["finishedAt"]).timestamp()
        result = client.get(f"/api/runs/{launched['id']}/result").json()
    return seconds, delay, float(result["final"]["metrics"]["accuracy"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        direct(root / "warm-up")  # torch, the demo data and the first model: not measured
        server, thread, base = _serve(root / "service")
        try:
            plain = [direct(root / f"direct-{i}") for i in range(args.repeats)]
            served = [through_api(base) for _ in range(args.repeats)]
        finally:
            server.should_exit = True
            thread.join(10)
    a = statistics.median(t for t, _ in plain)
    b = statistics.median(t for t, _, _ in served)
    delay = max(d for _, d, _ in served)
    same = {acc for _, acc in plain} == {acc for _, _, acc in served}
    print(f"{'':34}{'seconds':>9}{'ratio':>8}")
    print(f"{'(a) medfl.run, this process':34}{a:9.2f}{1:8.2f}")
    print(f"{'(b) through the API, SSE to end':34}{b:9.2f}{b / a:8.2f}")
    print(f"end event after finishedAt: at most {delay:.3f} s over {args.repeats} runs")
    print(f"test accuracy (a) {plain[0][1]:.6f}, (b) {served[0][2]:.6f}")
    checks = [
        (b / a <= 1.5, f"API run within 1.5x of the direct run ({b / a:.2f}x)"),
        (delay <= 0.5, f"end event within 0.5 s of the run's end ({delay:.3f} s)"),
        (same, "the API's run computes the direct run's test accuracy exactly"),
    ]
    for ok, what in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
