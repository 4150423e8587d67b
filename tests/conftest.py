"""Shared fixtures: small synthetic sites on disk and a one-call fast-engine run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medfl import RunOutcome, run
from medfl.spec import Experiment, parse_experiment
from tests.helpers import make_sites


@pytest.fixture
def toy_spec(tmp_path: Path) -> dict[str, Any]:
    """Three CSV sites (200, 150 and 100 patients), 3 rounds of logistic regression."""
    return make_sites(tmp_path)


@pytest.fixture
def run_fast(tmp_path: Path) -> Callable[..., RunOutcome]:
    """Run a spec dict (or Experiment) with the fast engine into tmp_path/<out>."""

    def _run(spec: dict[str, Any] | Experiment, out: str = "run", **kwargs: Any) -> RunOutcome:
        experiment = spec if isinstance(spec, Experiment) else parse_experiment(spec)
        kwargs.setdefault("baselines", False)
        return run(experiment, out=tmp_path / out, **kwargs)

    return _run


# --- two workers (make test: pytest -n 2 --dist loadgroup) --------------------
# Tests that start Flower's or Ray's processes run one after another on one worker: they
# check that no deployment process is left (tests/deploy/conftest.py), use free ports
# and need the CPU; the rest run beside them on the other worker.
PROCESS_MARKERS = ("deploy", "ray")


def pytest_itemcollected(item: pytest.Item) -> None:
    """As each test is collected: before xdist reads the groups."""
    if any(item.get_closest_marker(m) for m in PROCESS_MARKERS):
        item.add_marker(pytest.mark.xdist_group("processes"))


# --- a time budget per test file --------------------------------------------
# `make test` must stay under 10 minutes on 2 cores. Each file has a budget (seconds,
# setup and teardown included); the summary lists the files and flags any over budget.
# MEDFL_STRICT_TEST_BUDGET=1 turns an overrun into a failing exit status.
TIME_BUDGETS = {
    "tests/fl/test_flower_engine.py": 150.0,
    "tests/deploy/test_local_backend.py": 300.0,  # real processes: 15-30 s a run
    "tests/deploy/test_roles.py": 60.0,
    "tests/tuning/test_search.py": 60.0,  # one Ray start, 8 trials, the best run
    "tests/deploy/test_tune_federation.py": 90.0,  # one deployment, Ray, 2 trial runs, best
    "tests/operator/test_pods_run_flower.py": 90.0,  # the operator's pods as real processes
    "tests/test_examples.py": 60.0,  # one Ray start: the secure-aggregation example's round
}
DEFAULT_BUDGET = 30.0
_spent: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    _spent[path] = _spent.get(path, 0.0) + report.duration


def _over_budget() -> dict[str, float]:
    return {p: s for p, s in _spent.items() if s > TIME_BUDGETS.get(p, DEFAULT_BUDGET)}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _spent:
        return
    terminalreporter.section("time per test file (budget)")
    over = _over_budget()
    for path, spent in sorted(_spent.items(), key=lambda kv: -kv[1]):
        budget = TIME_BUDGETS.get(path, DEFAULT_BUDGET)
        flag = "  OVER BUDGET" if path in over else ""
        terminalreporter.write_line(f"{spent:7.1f} s  ({budget:5.0f} s)  {path}{flag}")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("MEDFL_STRICT_TEST_BUDGET") == "1" and _over_budget() and exitstatus == 0:
        session.exitstatus = 1
