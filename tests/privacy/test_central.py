"""Central (client-level) DP at the server: clipping, the noise's scale, the accountant."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medfl import run
from medfl.errors import SpecError
from medfl.privacy._accountant import make_accountant
from medfl.privacy._central import Adaptive, CentralNoise, CentralPlan, central_plan, clipped
from medfl.runners import RunOutcome
from medfl.spec import parse_experiment
from tests.helpers import (
    assert_same_arrays,
    interrupt_after,
    make_sites,
    model_arrays,
    read_result,
)

CENTRAL = {"mode": "central", "noiseMultiplier": 1.2, "clippingNorm": 0.5, "delta": 1e-5}


def test_a_long_update_is_clipped_to_the_norm_and_a_short_one_kept() -> None:
    long = [np.array([3.0, 4.0]), np.array([12.0])]  # norm 13
    short = [np.array([0.1, 0.0]), np.array([0.0])]

    out, was = clipped(long, 6.5)
    kept, was_short = clipped(short, 6.5)

    assert was and not was_short
    np.testing.assert_allclose(out[0], [1.5, 2.0])
    np.testing.assert_allclose(out[1], [6.0])
    assert kept is short


def test_the_noisy_mean_has_the_noise_of_the_multiplier_times_the_norm_over_sites() -> None:
    plan = CentralPlan(2.0, 0.5, 1e-5, "rdp", 10, calibrated=False)
    noise = CentralNoise(plan, sites=4, seed=7)
    current = [np.zeros(20_000, dtype=np.float32)]
    updates = [[np.full(20_000, 1.0, dtype=np.float32)] for _ in range(4)]  # norm 141: clipped

    out = noise.aggregate(current, updates, server_round=1)

    mean_change = 0.5 / np.sqrt(20_000)  # each change clipped to norm 0.5, same direction
    assert noise.clipped_by_round == [4]
    assert out[0].mean() == pytest.approx(mean_change, abs=3 * 0.25 / np.sqrt(20_000))
    assert out[0].std() == pytest.approx(2.0 * 0.5 / 4, rel=0.02)


def test_epsilon_after_r_rounds_is_opacus_rdp_at_sample_rate_one() -> None:
    plan = CentralPlan(1.2, 0.5, 1e-5, "rdp", 5, calibrated=False)
    noise = CentralNoise(plan, sites=3, seed=0)
    zero = [np.zeros(3)]
    figures = []

    for r in range(1, 6):
        noise.aggregate(zero, [zero, zero, zero], r)
        figures.append(noise.epsilon)

    accountant = make_accountant("rdp")
    accountant.history = [(1.2, 1.0, 5)]
    assert figures[-1] == pytest.approx(accountant.get_epsilon(delta=1e-5), abs=1e-6)
    assert all(a < b for a, b in itertools.pairwise(figures))
    assert figures[-1] == pytest.approx(plan.planned_epsilon, abs=1e-12)


def test_a_target_epsilon_chooses_the_noise_for_all_rounds(tmp_path: Path) -> None:
    privacy = {"mode": "central", "targetEpsilon": 3.0, "clippingNorm": 0.5, "delta": 1e-5}
    experiment = parse_experiment(make_sites(tmp_path, privacy=privacy))

    plan = central_plan(experiment.privacy, rounds=3)

    assert plan.calibrated
    assert 3.0 - 0.05 < plan.planned_epsilon <= 3.0


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"mode": "central", "noiseMultiplier": 1.0, "delta": 1e-5},
         "mode 'central' needs 'clippingNorm' (the L2 norm each site's update is clipped to)"),
        ({"mode": "local", "noiseMultiplier": 1.0, "delta": 1e-5, "clippingNorm": 1.0},
         "clippingNorm: only mode 'central' clips whole updates (mode 'local' clips each "
         "example's gradient to maxGradNorm)"),
        ({"mode": "central", "clippingNorm": 1.0, "delta": 1e-5},
         "mode 'central' needs either 'targetEpsilon' or 'noiseMultiplier'"),
    ],
)  # fmt: skip
def test_central_settings_are_checked_with_the_field_named(
    tmp_path: Path, privacy: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_experiment(make_sites(tmp_path, privacy=privacy))

    assert err.value.problems == [("privacy", message)]


def test_a_central_run_reports_its_epsilon_round_by_round_and_repeats_exactly(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    spec = make_sites(tmp_path, privacy=CENTRAL, evaluation={"baselines": ["local"]})

    first = run_fast(spec, out="one", baselines=True)
    second = run_fast(spec, out="two", baselines=True)

    result = read_result(first.run_dir)
    central = result["privacy"]["central"]
    assert result["privacy"]["mode"] == "central"
    assert (central["rounds"], central["sites"], central["clippingNorm"]) == (3, 3, 0.5)
    assert len(central["clippedByRound"]) == 3
    accountant = make_accountant("rdp")
    accountant.history = [(1.2, 1.0, 3)]
    assert central["epsilon"] == pytest.approx(accountant.get_epsilon(delta=1e-5), abs=1e-6)
    assert result["privacy"]["sites"] == {}
    assert result["baselines"]["local"]["sites"]  # baselines train without central noise
    assert read_result(second.run_dir)["final"] == result["final"]  # seeded noise repeats
    report = (first.run_dir / "report.md").read_text()
    assert "Central differential privacy: Gaussian, client-level, fixed clipping" in report


ADAPTIVE = dict(CENTRAL, clipping="adaptive", countNoiseMultiplier=2.4)


def test_adaptive_clipping_moves_the_norm_to_the_target_quantile_of_update_norms() -> None:
    adaptive = Adaptive(target_quantile=0.5, learning_rate=0.2, count_noise=0.2)
    plan = CentralPlan(0.1, 0.1, 1e-5, "rdp", 80, calibrated=False, adaptive=adaptive)
    noise = CentralNoise(plan, sites=4, seed=3)
    zero = [np.zeros(1)]
    updates = [[np.array([n])] for n in (1.0, 2.0, 3.0, 4.0)]  # norms 1, 2, 3, 4

    for r in range(1, 81):
        noise.aggregate(zero, updates, r)

    assert noise.norms[0] == 0.1 and noise.clipped_by_round[0] == 4
    assert noise.norms[1] == pytest.approx(0.1 * np.exp(0.2 * 0.5), rel=0.1)  # none fit: grows
    assert 2.0 < np.median(noise.norms[-20:]) < 3.0  # half of the updates fit
    assert plan.update_noise == pytest.approx((0.1**-2 - 0.2**-2) ** -0.5)


def test_adaptive_clippings_two_noises_cost_the_noise_multiplier_alone() -> None:
    adaptive = Adaptive(0.5, 0.2, count_noise=2.0)
    plan = CentralPlan(1.0, 0.5, 1e-5, "rdp", 4, calibrated=False, adaptive=adaptive)
    noise = CentralNoise(plan, sites=4, seed=7)
    current = [np.zeros(20_000)]
    for r in range(1, 5):
        out = noise.aggregate(current, [current] * 4, r)  # no change: the output is noise

    assert plan.update_noise == pytest.approx(2 / np.sqrt(3))  # (1 - 1/4)^-1/2
    assert out[0].std() == pytest.approx(plan.update_noise * noise.norms[-1] / 4, rel=0.02)
    accountant = make_accountant("rdp")
    accountant.history = [(1.0, 1.0, 4)]
    assert noise.epsilon == pytest.approx(accountant.get_epsilon(delta=1e-5), abs=1e-9)


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"mode": "local", "noiseMultiplier": 1.0, "delta": 1e-5, "clipping": "adaptive"},
         "clipping: adaptive clips whole updates: only with mode 'central'"),
        (dict(CENTRAL, clipping="adaptive", countNoiseMultiplier=1.2),
         "countNoiseMultiplier (1.2) must exceed noiseMultiplier (1.2): together they cost "
         "what noiseMultiplier alone would"),
    ],
)  # fmt: skip
def test_adaptive_settings_are_checked_with_the_field_named(
    tmp_path: Path, privacy: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_experiment(make_sites(tmp_path, privacy=privacy))

    assert err.value.problems == [("privacy", message)]


def test_an_adaptive_run_cut_and_resumed_equals_the_whole_run(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    spec = make_sites(tmp_path, privacy=ADAPTIVE, training={"rounds": 4})
    whole = run_fast(spec, out="whole")
    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out="cut", progress=interrupt_after(2))
    run(resume=tmp_path / "cut", baselines=False)

    central = read_result(tmp_path / "cut")["privacy"]["central"]
    assert central == read_result(whole.run_dir)["privacy"]["central"]
    assert len(central["clippingNormByRound"]) == 4
    assert central["adaptive"]["updateNoiseMultiplier"] == pytest.approx(
        (1.2**-2 - 2.4**-2) ** -0.5
    )
    assert_same_arrays(model_arrays(whole.run_dir), model_arrays(tmp_path / "cut"))
    assert (
        "Adaptive clipping: the norm started at 0.5" in (tmp_path / "cut" / "report.md").read_text()
    )
