"""Central (client-level) differential privacy at the server: DP-FedAvg with fixed
clipping (McMahan et al., 2018).

Each round every site's change to the global model is clipped to ``clippingNorm`` (L2,
over every tensor it sends), the clipped changes are summed and divided by the number
of sites the federation started with (a fixed denominator, so one site's whole
contribution moves the mean by at most clippingNorm / n), and Gaussian noise of
standard deviation noiseMultiplier * clippingNorm / n is added to every value. Every
site takes part in every round, so the accountant sees sample rate 1, one step per
round. What it protects: any one site's whole data, in every global model released.
What it does not: the server sees each site's update before the noise (no secure
aggregation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfl._seeds import derive_seed
from medfl.privacy._accountant import calibrate, epsilon_of
from medfl.spec._models import Accountant, Privacy

MECHANISM = "Gaussian, client-level, fixed clipping (DP-FedAvg)"
Params = list[np.ndarray]

CENTRAL_SCOPE: dict[str, list[str] | str] = {
    "unit": "one site: all of its rows together (client-level DP)",
    "covers": [
        "every global model the server releases (each round's and the final one), and "
        "everything computed from them: a site's whole contribution changes each round's "
        "mean by at most clippingNorm / sites, and Gaussian noise masks it",
    ],
    "doesNotCover": [
        "the server itself: it sees each site's update before the noise (there is no "
        "secure aggregation)",
        "the standardisation and imputation aggregates and category counts sent once "
        "before round 1, and the example counts",
        "metrics: the validation and test metrics each site reports",
        "baselines, which train without central noise (simulation only)",
    ],
    "assumptions": [
        "every site takes part in every round (sample rate 1 for the accountant)",
        "with reproducibleNoise (the default) the noise derives from training.seed: the "
        "guarantee then holds only against those who do not know the seed",
    ],
}


@dataclass(frozen=True)
class CentralPlan:
    noise_multiplier: float
    clipping_norm: float
    delta: float
    accountant: Accountant
    rounds: int
    calibrated: bool  # chosen for targetEpsilon, or given

    @property
    def planned_epsilon(self) -> float:
        return epsilon_of(self.accountant, [(self.noise_multiplier, 1.0, self.rounds)], self.delta)


def central_plan(privacy: Privacy, rounds: int) -> CentralPlan:
    assert privacy.clipping_norm is not None and privacy.delta is not None
    noise = privacy.noise_multiplier
    if noise is None:
        assert privacy.target_epsilon is not None
        noise = calibrate(privacy.target_epsilon, privacy.delta, 1.0, rounds, privacy.accountant)
    return CentralPlan(
        noise, privacy.clipping_norm, privacy.delta, privacy.accountant, rounds,
        calibrated=privacy.noise_multiplier is None,
    )  # fmt: skip


def clipped(change: Params, norm: float) -> tuple[Params, bool]:
    """``change`` scaled down to L2 norm ``norm`` over all its tensors, if it is longer."""
    length = float(np.sqrt(sum(float(np.sum(c * c)) for c in change)))
    if length <= norm:
        return change, False
    return [c * (norm / length) for c in change], True


@dataclass
class CentralNoise:
    """The server's mechanism and its accountant for one experiment."""

    plan: CentralPlan
    sites: int  # the denominator: the sites the federation started with
    seed: int | None  # None: fresh randomness (privacy.reproducibleNoise off)
    rounds_done: int = 0
    clipped_by_round: list[int] = field(default_factory=list)

    def aggregate(self, current: Params, updates: list[Params], server_round: int) -> Params:
        """The noisy mean of the sites' clipped changes, added to ``current``."""
        changes = [[u.astype(np.float64) - c for u, c in zip(update, current, strict=True)]
                   for update in updates]  # fmt: skip
        kept = [clipped(change, self.plan.clipping_norm) for change in changes]
        self.clipped_by_round.append(sum(was for _, was in kept))
        std = self.plan.noise_multiplier * self.plan.clipping_norm / self.sites
        rng = np.random.default_rng(
            None if self.seed is None else derive_seed(self.seed, "central-noise", server_round)
        )
        out = []
        for i, c in enumerate(current):
            total = sum(change[i] for change, _ in kept)
            noisy = total / self.sites + rng.normal(0.0, std, c.shape)
            out.append((c.astype(np.float64) + noisy).astype(c.dtype))
        self.rounds_done += 1
        return out

    @property
    def epsilon(self) -> float:
        history = [(self.plan.noise_multiplier, 1.0, self.rounds_done)] if self.rounds_done else []
        return epsilon_of(self.plan.accountant, history, self.plan.delta)

    def report(self) -> dict[str, Any]:
        return {
            "mechanism": MECHANISM,
            "noiseMultiplier": self.plan.noise_multiplier,
            "noiseCalibrated": self.plan.calibrated,
            "clippingNorm": self.plan.clipping_norm,
            "delta": self.plan.delta,
            "accountant": self.plan.accountant,
            "sites": self.sites,
            "rounds": self.rounds_done,
            "epsilon": self.epsilon,
            "plannedEpsilon": self.plan.planned_epsilon,
            "clippedByRound": list(self.clipped_by_round),
        }
