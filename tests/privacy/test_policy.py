"""A site's privacy policy: allowed columns, a lifetime ε with its ledger, stopping early."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from medfl import RunOutcome
from medfl.errors import DataError, PolicyError
from medfl.runners import FastEngine
from medfl.spec._policy import load_policy
from tests.helpers import read_result
from tests.privacy.helpers import dp_spec, write_policy


def _with_policy(site: str, path: Path) -> FastEngine:
    return FastEngine(site_policies=((site, path),))


def test_a_forbidden_column_refuses_the_run_at_that_site_before_training(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    allowed = ["age", "sex", "smoker", "outcome"]  # not bp
    ledger = tmp_path / "site-b" / "ledger.json"
    policy = write_policy(
        tmp_path / "site-b" / "policy.yaml",
        {"allowedColumns": allowed, "maxEpsilon": 10, "ledger": str(ledger)},
    )
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 2})

    result = read_result(run_fast(spec, engine=_with_policy("site-b", policy)).run_dir)

    assert result["excludedSites"] == {
        "site-b": "site 'site-b' takes no part: the experiment reads column 'bp', which its "
        "policy does not allow (allowedColumns: age, sex, smoker, outcome)"
    }
    assert all("site-b" not in r["sites"] for r in result["rounds"])
    assert not ledger.exists()  # nothing spent, nothing counted


def test_the_ledger_counts_two_runs_and_the_third_is_refused(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    ledger = tmp_path / "site-c" / "ledger.json"
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 3})
    first = read_result(run_fast(spec, out="probe").run_dir)
    needed = first["privacy"]["sites"]["site-c"]["plannedEpsilon"]
    policy = write_policy(
        tmp_path / "site-c" / "policy.yaml",
        {"maxEpsilon": round(2.5 * needed, 6), "ledger": "ledger.json"},  # next to the policy
    )
    engine = _with_policy("site-c", policy)

    for out in ("one", "two"):
        run_fast(spec, out=out, engine=engine)
    entries = json.loads(ledger.read_text())["entries"]
    assert [e["epsilon"] for e in entries] == pytest.approx([needed, needed], abs=1e-12)
    assert {e["experiment"] for e in entries} == {"toy"}
    with pytest.raises(DataError) as refused:
        run_fast(spec, out="three", engine=engine)

    left = 2.5 * needed - 2 * needed
    assert (
        f"site 'site-c' takes no part: the experiment needs ε = {needed:.3f} (δ = 1e-05) at "
        f"this site and its policy has ε = {left:.3f} left of its lifetime maxEpsilon "
        f"{round(2.5 * needed, 6):g}"
    ) in str(refused.value)
    assert len(json.loads(ledger.read_text())["entries"]) == 2


def test_a_site_with_a_smaller_budget_stops_before_the_round_that_would_exceed_it(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 2})
    probe = read_result(run_fast(spec, out="probe").run_dir)
    per_round = [r["sites"]["site-a"]["epsilon"] for r in probe["rounds"]]
    budget = (per_round[1] + per_round[2]) / 2  # two rounds fit, the third does not
    policy = write_policy(
        tmp_path / "a" / "policy.yaml",
        {"maxEpsilon": budget, "ledger": "ledger.json", "whenBudgetShort": "stop-early"},
    )

    result = read_result(run_fast(spec, engine=_with_policy("site-a", policy)).run_dir)

    statuses = [r["sites"]["site-a"]["status"] for r in result["rounds"]]
    assert statuses == ["ok", "ok", "stopped", "stopped"]
    assert result["status"] == "succeeded"
    site = result["privacy"]["sites"]["site-a"]
    assert site["epsilon"] == per_round[1] and site["roundsContributed"] == 2
    assert site["stopped"].startswith("site 'site-a' stops contributing at round 3:")
    assert any(n.startswith("site 'site-a' stops contributing at round 3") for n in result["notes"])
    assert all(r["sites"]["site-b"]["status"] == "ok" for r in result["rounds"])


def test_without_stop_early_a_short_budget_refuses_before_training(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    policy = write_policy(tmp_path / "a" / "p.yaml", {"maxEpsilon": 0.01, "ledger": "l.json"})
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 2})
    result = read_result(run_fast(spec, engine=_with_policy("site-a", policy)).run_dir)
    assert "its policy has ε = 0.010 left" in result["excludedSites"]["site-a"]


def test_a_budget_needs_a_ledger_and_no_dp_run_is_taken(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    with pytest.raises(PolicyError, match="privacy: 'maxEpsilon' needs 'ledger'"):
        load_policy(write_policy(tmp_path / "p.yaml", {"maxEpsilon": 1}))
    policy = write_policy(tmp_path / "q.yaml", {"maxEpsilon": 1, "ledger": "l.json"})
    assert load_policy(policy).privacy.ledger == str(tmp_path / "l.json")
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 2})
    del spec["privacy"]
    result = read_result(run_fast(spec, engine=_with_policy("site-a", policy)).run_dir)
    assert (
        "trains without sample-level differential privacy at the site (privacy.mode 'none'"
        in result["excludedSites"]["site-a"]
    )
