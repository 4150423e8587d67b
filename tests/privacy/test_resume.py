"""A local-DP run cut and resumed continues the same accounting at every site: the same
accountant (from the steps already taken), the same ledger entry, the same budget stop.

Noise and batch draws are seeded from (training.seed, site, round), so the rounds after
the cut draw what the whole run drew: ε, steps and the model are the whole run's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flwr.supercore.task_identity import TaskIdentity

from medfl import RunOutcome, run
from medfl.errors import PrivacyRefusal
from medfl.fl._transport import GridTransport
from medfl.privacy import Ledger, PrivacyResume, SitePrivacy
from medfl.privacy._accountant import epsilon_of
from medfl.results import RunStore
from medfl.runners import FastEngine
from medfl.runners._drive import DriveOptions, drive
from medfl.spec import parse_experiment
from medfl.spec._policy import load_policy
from tests.fl.test_flower_engine import LoopbackGrid
from tests.helpers import (
    assert_same_arrays,
    cut_before_round_2_checkpoint,
    interrupt_after,
    model_arrays,
    read_result,
)
from tests.privacy.helpers import dp_spec, write_policy


@pytest.fixture(autouse=True, scope="module")
def _task_identity() -> None:
    """Messages take their run and sender from here; Flower's engines set it."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _assert_same_rounds_and_privacy(resumed: dict[str, Any], whole: dict[str, Any]) -> None:
    for name, site in whole["privacy"]["sites"].items():
        again = resumed["privacy"]["sites"][name]
        assert again["epsilon"] == pytest.approx(site["epsilon"], abs=1e-9)
        assert again["steps"] == site["steps"]
        assert again["roundsContributed"] == site["roundsContributed"]
        assert again["stopped"] == site["stopped"]
    for again, record in zip(resumed["rounds"], whole["rounds"], strict=True):
        again.pop("seconds"), record.pop("seconds")
        assert again == record  # every site's status, reason, ε, loss and metrics


def _engine(tmp_path: Path, folder: str, site: str, **privacy: Any) -> FastEngine:
    policy = write_policy(tmp_path / folder / "policy.yaml", {"ledger": "ledger.json", **privacy})
    return FastEngine(site_policies=((site, policy),))


def _entries(tmp_path: Path, folder: str) -> list[dict[str, Any]]:
    return list(json.loads((tmp_path / folder / "ledger.json").read_text())["entries"])


def test_a_run_cut_after_round_2_and_resumed_ends_as_the_whole_run(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    spec = dp_spec(tmp_path, {"noiseMultiplier": None, "targetEpsilon": 2.0})
    whole = run_fast(spec, out="whole", engine=_engine(tmp_path, "whole-b", "site-b"))
    engine = _engine(tmp_path, "cut-b", "site-b")
    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out="cut", progress=interrupt_after(2), engine=engine)
    cut = read_result(tmp_path / "cut")
    key = cut["privacy"]["sites"]["site-b"]["run"]

    run(resume=tmp_path / "cut", engine=engine, baselines=False)

    resumed, expected = read_result(tmp_path / "cut"), read_result(whole.run_dir)
    assert resumed["status"] == "succeeded" and len(resumed["rounds"]) == 4
    _assert_same_rounds_and_privacy(resumed, expected)
    assert resumed["privacy"]["sites"]["site-b"]["run"] == key  # the same ledger key
    assert_same_arrays(model_arrays(whole.run_dir), model_arrays(tmp_path / "cut"))
    assert resumed["final"] == expected["final"]
    entries = _entries(tmp_path, "cut-b")
    assert [e["run"] for e in entries] == [key]  # one entry for the run, continued
    site_b = expected["privacy"]["sites"]["site-b"]
    assert entries[0]["epsilon"] == pytest.approx(site_b["epsilon"], abs=1e-9)
    assert entries[0]["steps"] == site_b["steps"]


def test_over_flower_messages_to_fresh_processes_a_resumed_run_ends_as_the_whole_run(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    # the resume travels in the hello; every later message meets a process that never
    # saw it, so the continued accountant must come from the node's Context state
    experiment = parse_experiment(dp_spec(tmp_path))
    whole = run_fast(experiment, out="whole")
    with pytest.raises(KeyboardInterrupt):
        _drive_cut(LoopbackGrid(experiment, forgetful=True), experiment, tmp_path / "cut")
    store = RunStore(tmp_path / "cut")
    transport = GridTransport(LoopbackGrid(experiment, forgetful=True), experiment)  # type: ignore[arg-type]

    drive(experiment, transport, store, DriveOptions("flower", resume=True, baselines=False))

    _assert_same_rounds_and_privacy(read_result(tmp_path / "cut"), read_result(whole.run_dir))
    assert_same_arrays(model_arrays(whole.run_dir), model_arrays(tmp_path / "cut"))


def _drive_cut(grid: LoopbackGrid, experiment: Any, out: Path) -> None:
    store = RunStore(out)
    store.create(experiment)
    options = DriveOptions("flower", baselines=False, progress=interrupt_after(2))
    drive(experiment, GridTransport(grid, experiment), store, options)  # type: ignore[arg-type]


@pytest.mark.parametrize("after", [2, 3], ids=["before-it-stops", "after-it-stopped"])
def test_a_site_whose_budget_stops_it_at_round_3_stops_there_when_resumed(
    tmp_path: Path, run_fast: Callable[..., RunOutcome], after: int
) -> None:
    spec = dp_spec(tmp_path, strategy={"name": "fedavg", "minSites": 2})
    probe = read_result(run_fast(spec, out="probe").run_dir)
    per_round = [r["sites"]["site-a"]["epsilon"] for r in probe["rounds"]]
    budget = {"maxEpsilon": (per_round[1] + per_round[2]) / 2, "whenBudgetShort": "stop-early"}
    whole = run_fast(spec, out="whole", engine=_engine(tmp_path, "whole-a", "site-a", **budget))
    engine = _engine(tmp_path, "cut-a", "site-a", **budget)
    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out="cut", progress=interrupt_after(after), engine=engine)

    run(resume=tmp_path / "cut", engine=engine, baselines=False)

    resumed, expected = read_result(tmp_path / "cut"), read_result(whole.run_dir)
    statuses = [r["sites"]["site-a"]["status"] for r in resumed["rounds"]]
    assert statuses == ["ok", "ok", "stopped", "stopped"]
    _assert_same_rounds_and_privacy(resumed, expected)
    stop = resumed["privacy"]["sites"]["site-a"]["stopped"]
    assert stop.startswith("site 'site-a' stops contributing at round 3:")
    assert sum(n.startswith(stop) for n in resumed["notes"]) == 1
    assert [e["epsilon"] for e in _entries(tmp_path, "cut-a")] == [per_round[1]]


@pytest.mark.parametrize(("ledger_steps", "expected"), [(40, 40), (8, 24)])
def test_a_resumed_site_takes_the_larger_of_its_ledgers_steps_and_the_servers(
    tmp_path: Path, ledger_steps: int, expected: int
) -> None:
    # 40: it trained a round the server never recorded (cut in between): that still counts
    experiment = parse_experiment(dp_spec(tmp_path))
    policy = load_policy(write_policy(tmp_path / "p.yaml", {"ledger": "ledger.json"}))
    Ledger(tmp_path / "ledger.json", "site-a").record("run-1", steps=ledger_steps, epsilon=0.5)
    site = SitePrivacy(experiment, "site-a", policy.privacy)
    rows = 120
    resume = PrivacyResume("run-1", 24, 0.4, 3.0, 16 / rows, rounds_done=3)

    site.check(rows, 8, resume)

    assert site.run == "run-1"
    assert site.accountant is not None and site.accountant.history == [(3.0, 16 / rows, expected)]


def test_a_resumed_run_whose_budget_no_longer_fits_the_ledger_is_refused(tmp_path: Path) -> None:
    # the check is on what the run will have spent after its remaining rounds
    experiment = parse_experiment(dp_spec(tmp_path))
    budget = {"ledger": "ledger.json", "maxEpsilon": 2.0}
    policy = load_policy(write_policy(tmp_path / "p.yaml", budget))
    ledger = Ledger(tmp_path / "ledger.json", "site-a")
    ledger.record("run-1", steps=16, epsilon=0.8)
    ledger.record("another", steps=99, epsilon=1.0)  # spent there since the run was cut
    site = SitePrivacy(experiment, "site-a", policy.privacy)
    resume = PrivacyResume("run-1", 16, 0.8, 3.0, 16 / 120, rounds_done=2)

    with pytest.raises(PrivacyRefusal) as refused:
        site.check(120, 8, resume)

    needed = epsilon_of("rdp", [(3.0, 16 / 120, 32)], 1e-5)  # 2 rounds done, 2 to go
    assert needed > 1.0
    assert str(refused.value) == (
        f"site 'site-a' takes no part: the experiment needs ε = {needed:.3f} (δ = 1e-05) at "
        "this site and its policy has ε = 1.000 left of its lifetime maxEpsilon 2"
    )


def test_a_round_the_checkpoint_lacks_runs_again_and_its_steps_count_again(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    # cut after result.json recorded round 2 and before its checkpoint landed: the
    # server never saw a model with round 2 in it, but the sites did release round 2
    spec = dp_spec(tmp_path, training={"rounds": 3})
    cut = tmp_path / "cut"
    cut_before_round_2_checkpoint(run_fast, spec, cut)

    run(resume=cut, baselines=False)

    result = read_result(cut)
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3]
    for site in result["privacy"]["sites"].values():
        per_round = site["plannedSteps"] // 3
        assert site["steps"] == 4 * per_round  # rounds 1, 2, 2 again, 3
        offline = epsilon_of("rdp", [(3.0, site["sampleRate"], 4 * per_round)], 1e-5)
        assert site["epsilon"] == pytest.approx(offline, abs=1e-9)
        assert site["epsilon"] > site["plannedEpsilon"]
