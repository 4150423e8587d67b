"""ε as Opacus computes it, one accountant per site for the whole experiment."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant

from medfl import RunOutcome
from medfl.privacy._accountant import SiteAccountant
from medfl.privacy._plan import plan_for
from medfl.spec import parse_experiment
from medfl.training import LocalData
from medfl.training._private import _generator, poisson_batches, train_private
from tests.helpers import read_result
from tests.privacy.helpers import dp_spec


def _offline_epsilon(sigma: float, rate: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(sigma, rate, steps)]
    return accountant.get_epsilon(delta=delta)


def test_epsilon_after_each_round_is_opacus_offline_figure_and_grows(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    outcome = run_fast(dp_spec(tmp_path))
    result = read_result(outcome.run_dir)
    for name, site in result["privacy"]["sites"].items():
        per_round = [r["sites"][name]["epsilon"] for r in result["rounds"]]
        steps = site["plannedSteps"] // 4
        for r, eps in enumerate(per_round, start=1):
            expected = _offline_epsilon(3.0, site["sampleRate"], r * steps, 1e-5)
            assert eps == pytest.approx(expected, abs=1e-6)
        assert all(a < b for a, b in itertools.pairwise(per_round))
        assert site["epsilon"] == per_round[-1]
        assert site["steps"] == 4 * steps
        assert site["noiseMultiplier"] == 3.0 and site["accountant"] == "rdp"
    assert result["privacy"]["scope"]["doesNotCover"]
    assert result["privacy"]["central"] is None


def test_noise_for_a_target_is_calibrated_for_every_round_at_each_site(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    spec = dp_spec(tmp_path, {"noiseMultiplier": None, "targetEpsilon": 2.0})
    result = read_result(run_fast(spec).run_dir)
    sites = result["privacy"]["sites"]
    assert len({s["noiseMultiplier"] for s in sites.values()}) == 3  # each site its own
    for site in sites.values():
        assert site["noiseCalibrated"]
        assert 2.0 - 0.02 < site["epsilon"] <= 2.0  # Opacus's bisection tolerance: 0.01
        assert site["epsilon"] == pytest.approx(site["plannedEpsilon"], abs=1e-12)


def test_other_accountants_are_used_as_named(tmp_path: Path) -> None:
    privacy = parse_experiment(dp_spec(tmp_path, {"accountant": "gdp"})).privacy
    plan = plan_for(privacy, rows=80, batch_size=16, steps=5, rounds=4)
    assert plan.accountant == "gdp"
    rdp = plan_for(privacy.model_copy(update={"accountant": "rdp"}), 80, 16, 5, 4)
    assert plan.planned_epsilon != rdp.planned_epsilon


def test_empty_poisson_batch_at_a_three_row_site_does_not_crash(tmp_path: Path) -> None:
    privacy = parse_experiment(dp_spec(tmp_path)).privacy
    training = parse_experiment(dp_spec(tmp_path, training={"batchSize": 1})).training
    plan = plan_for(privacy, rows=3, batch_size=1, steps=12, rounds=1)
    # the very draws train_private makes for seed 5: at least one batch is empty
    drawn = poisson_batches(3, 12, plan.sample_rate, _generator(5, "poisson", True))
    assert any(len(b) == 0 for b in drawn)
    data = LocalData(torch.randn(3, 4), torch.tensor([0.0, 1.0, 1.0]))
    accountant = SiteAccountant("rdp", 1e-5)
    model = torch.nn.Linear(4, 1)
    params = [p.detach().numpy().copy() for p in model.state_dict().values()]

    update = train_private(
        model, params, data, training, parse_experiment(dp_spec(tmp_path)).strategy, 5, plan,
        accountant,
    )  # fmt: skip

    assert update.problem is None and update.steps == 12
    assert accountant.steps == 12  # an empty batch is still a noisy, counted step
    assert accountant.epsilon() == pytest.approx(_offline_epsilon(3.0, 1 / 3, 12, 1e-5), abs=1e-9)
