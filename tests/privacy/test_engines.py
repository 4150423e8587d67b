"""With DP on, the Flower-messages path computes exactly what the fast engine does,
also when every message meets a fresh ClientApp process (the accountant then lives in
the node's Context.state) and a site stops when its budget is spent.

Noise and Poisson draws come from generators seeded from (training.seed, site, round),
so two engines draw the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from medfl import RunOutcome, run
from medfl.fl import make_client_app
from medfl.fl._simulation import _portable_spec
from medfl.runners import FastEngine
from medfl.spec import parse_experiment
from tests.fl.test_flower_engine import LoopbackGrid, _assert_same_run, _drive_over
from tests.privacy.helpers import dp_spec, write_policy


@pytest.fixture(autouse=True, scope="module")
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _policy(folder: Path, budget: float) -> Path:
    privacy = {"maxEpsilon": budget, "ledger": "ledger.json", "whenBudgetShort": "stop-early"}
    return write_policy(folder / "policy.yaml", privacy)


@pytest.mark.parametrize("forgetful", [False, True], ids=["kept-workers", "fresh-processes"])
def test_dp_run_over_messages_equals_the_fast_engine(tmp_path: Path, forgetful: bool) -> None:
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 2})
    experiment = parse_experiment(spec)
    probe = run(experiment, out=tmp_path / "probe", baselines=False, report=False).result
    eps = [r.sites["site-b"].epsilon or 0.0 for r in probe.rounds]
    budget = (eps[1] + eps[2]) / 2  # site-b stops at round 3
    fast = run(
        experiment,
        engine=FastEngine(site_policies=(("site-b", _policy(tmp_path / "fast", budget)),)),
        out=tmp_path / "fast-run",
        baselines=False,
        report=False,
    )
    grid = LoopbackGrid(experiment, forgetful=forgetful)
    grid.app = make_client_app(
        _portable_spec(experiment), {"site-b": _policy(tmp_path / "grid", budget)}
    )

    over = _drive_over(grid, experiment, tmp_path / "grid-run")

    _assert_same_run(over, fast)
    _check_stopped(fast, tmp_path)


def _check_stopped(fast: RunOutcome, tmp_path: Path) -> None:
    statuses = [r.sites["site-b"].status for r in fast.result.rounds]
    assert statuses == ["ok", "ok", "stopped", "stopped"]
    for side in ("fast", "grid"):
        entries = json.loads((tmp_path / side / "ledger.json").read_text())["entries"]
        assert len(entries) == 1  # one run, one entry, brought up to date each round
        assert fast.result.privacy is not None
        assert entries[0]["epsilon"] == fast.result.privacy.sites["site-b"].epsilon
