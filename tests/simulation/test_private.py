"""DP-SGD at every virtual site: Opacus's clipping arithmetic, vectorised, and the same
accounting as the privacy section (Opacus's RDP accountant per site)."""

from __future__ import annotations

import csv
import functools
from collections import Counter
from pathlib import Path

import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from torch import nn

from medfl import load_experiment, run
from medfl.runners import BatchedEngine, FastEngine
from medfl.simulation._private import private_gradients
from medfl.spec import LogisticModel, parse_experiment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "heart-disease"
DP = {"mode": "local", "noiseMultiplier": 1.1, "delta": 1e-5, "maxGradNorm": 1.0}


def private_scale(count: int, fraction: float, rounds: int, privacy: dict) -> object:
    doc = load_experiment(EXAMPLES / "scale.yaml").to_wire()
    doc["training"]["rounds"] = rounds
    doc["evaluation"]["baselines"] = []
    doc["simulation"]["virtualSites"]["count"] = count
    doc["simulation"]["sampleFraction"] = fraction
    doc["privacy"] = privacy
    return parse_experiment(doc)


def opacus_step(model: nn.Linear, x, y, clip: float, expected: int) -> list[torch.Tensor]:
    """One Opacus DP-SGD step without noise: the gradient its optimiser hands SGD."""
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=True)
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer = DPOptimizer(
        base, noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=expected,
        loss_reduction="mean",
    )  # fmt: skip
    optimizer.zero_grad()
    nn.functional.binary_cross_entropy_with_logits(
        wrapped(x).squeeze(-1), y, reduction="sum"
    ).backward()
    optimizer.pre_step()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    wrapped._close()
    return grads


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # Opacus, inputs need no grad
def test_vectorised_clipping_is_opacus_dp_optimizer_per_site() -> None:
    torch.manual_seed(0)
    features, rows, clip, expected = 6, 5, 0.3, 4
    x = torch.randn(2, rows, features) * 3  # large inputs: most rows clipped
    y = torch.tensor([[1.0, 0, 1, 1, 0], [0, 0, 1, 0, 1]])
    mask = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # site 2: a batch of three
    weight, bias = torch.randn(2, 1, features), torch.randn(2, 1)
    ours, _ = private_gradients(
        LogisticModel(), [weight, bias], x, y, mask, clip,
        noise_std=torch.zeros(2), expected=torch.full((2,), float(expected)), generator=None,
    )  # fmt: skip
    for site, n in ((0, 5), (1, 3)):
        model = nn.Linear(features, 1)
        with torch.no_grad():
            model.weight.copy_(weight[site])
            model.bias.copy_(bias[site])
        theirs = opacus_step(model, x[site, :n], y[site, :n], clip, expected)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a[site], b, rtol=1e-5, atol=1e-6)


@functools.cache
def opacus_epsilon(steps: int) -> float:
    """Opacus's RDP accountant, stepped as a site's DP optimiser steps it (q = 16 / 32)."""
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=1.1, sample_rate=16 / 32)
    return accountant.get_epsilon(1e-5)


def test_each_virtual_sites_epsilon_is_opacus_rdp_for_the_steps_it_took(tmp_path) -> None:
    experiment = private_scale(count=40, fraction=0.25, rounds=3, privacy=DP)
    result = run(experiment, out=tmp_path / "run", report=False).result
    with (tmp_path / "run" / "virtual_sites.csv").open() as f:
        rows = list(csv.DictReader(f))
    taken: Counter[str] = Counter()
    for row in rows:  # ε after each round, as the site's own accountant holds it
        taken[row["site"]] += int(row["steps"])
        expected = opacus_epsilon(taken[row["site"]])
        assert float(row["epsilon"]) == pytest.approx(expected, rel=1e-5)
    assert len(rows) == 3 * 10 and max(taken.values()) >= 4
    spread = result.simulation.privacy
    assert spread["sitesTrained"] == len(taken)
    assert spread["noiseMultiplier"] == {"min": 1.1, "max": 1.1}
    assert result.privacy is not None and result.privacy.sites == {}


def test_a_target_epsilon_is_met_by_every_virtual_site(tmp_path) -> None:
    privacy = {"mode": "local", "targetEpsilon": 3.0, "delta": 1e-5}
    result = run(private_scale(12, 1.0, 2, privacy), out=tmp_path / "run", report=False).result
    spread = result.simulation.privacy
    assert 2.9 <= spread["epsilonMax"] <= 3.0  # the calibration's tolerance is 0.01 in σ
    assert spread["epsilonMedian"] == spread["epsilonMax"]  # equal shards, every round


def test_own_sites_under_dp_spend_what_the_fast_engine_reports(tmp_path) -> None:
    doc = load_experiment(EXAMPLES / "experiment.yaml").to_wire()
    doc["training"]["rounds"] = 2
    doc["privacy"] = DP
    experiment = parse_experiment(doc)
    fast = run(experiment, engine=FastEngine(), out=tmp_path / "f", baselines=False).result
    ours = run(experiment, engine=BatchedEngine(), out=tmp_path / "b", baselines=False).result
    assert fast.privacy is not None and ours.privacy is not None
    for name, site in fast.privacy.sites.items():
        mine = ours.privacy.sites[name]
        assert (mine.steps, mine.rounds_contributed) == (site.steps, site.rounds_contributed)
        assert mine.epsilon == pytest.approx(site.epsilon, rel=1e-9)
        assert mine.noise_multiplier == site.noise_multiplier
