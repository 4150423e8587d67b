"""Central (client-level) differential privacy at the server: DP-FedAvg (McMahan et
al., 2018) with fixed or adaptive clipping (Andrew et al., 2021).

Each round every site's change to the global model is clipped to ``clippingNorm`` (L2,
over every tensor it sends), the clipped changes are summed and divided by the number
of sites the federation started with (a fixed denominator, so one site's whole
contribution moves the mean by at most clippingNorm / n), and Gaussian noise of
standard deviation noiseMultiplier * clippingNorm / n is added to every value. Every
site takes part in every round, so the accountant sees sample rate 1, one step per
round. Adaptive clipping: each round the server also counts the updates no longer than
the norm, adds Gaussian noise to that count (multiplier countNoiseMultiplier over the
count's sensitivity, one site) and moves the norm geometrically toward the
targetQuantile of the update norms; the update's noise multiplier is raised to
(z^-2 - z_count^-2)^-1/2, so the two releases together cost exactly what one Gaussian
mechanism of multiplier z costs, and the accountant is unchanged.
What it protects: any one site's whole data, in every global model released.
What it does not: the server sees each site's update before the noise (no secure
aggregation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfl._seeds import derive_seed
from medfl.errors import SpecError
from medfl.privacy._accountant import calibrate, epsilon_of
from medfl.spec._models import Accountant, Privacy

MECHANISMS = {
    "fixed": "Gaussian, client-level, fixed clipping (DP-FedAvg)",
    "adaptive": "Gaussian, client-level, adaptive clipping (DP-FedAvg, Andrew et al. 2021)",
}
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
class Adaptive:
    """Adaptive clipping's settings (privacy.clipping: adaptive)."""

    target_quantile: float
    learning_rate: float
    count_noise: float  # the count's noise multiplier (its sensitivity is one site)


@dataclass(frozen=True)
class CentralPlan:
    noise_multiplier: float  # what the accountant sees, for each round's releases together
    clipping_norm: float  # fixed: every round's; adaptive: round 1's
    delta: float
    accountant: Accountant
    rounds: int
    calibrated: bool  # chosen for targetEpsilon, or given
    adaptive: Adaptive | None = None

    @property
    def planned_epsilon(self) -> float:
        return epsilon_of(self.accountant, [(self.noise_multiplier, 1.0, self.rounds)], self.delta)

    @property
    def update_noise(self) -> float:
        """The update's own noise multiplier: z itself, or with adaptive clipping the
        larger one that leaves z for the update and the count together."""
        if self.adaptive is None:
            return self.noise_multiplier
        z, count = self.noise_multiplier, self.adaptive.count_noise
        return float((z**-2 - count**-2) ** -0.5)


def central_plan(privacy: Privacy, rounds: int) -> CentralPlan:
    assert privacy.clipping_norm is not None and privacy.delta is not None
    noise = privacy.noise_multiplier
    if noise is None:
        assert privacy.target_epsilon is not None
        noise = calibrate(privacy.target_epsilon, privacy.delta, 1.0, rounds, privacy.accountant)
    adaptive = None
    if privacy.clipping == "adaptive":
        count = privacy.count_noise_multiplier or 2.0 * noise
        if count <= noise:
            raise SpecError(
                [("privacy.countNoiseMultiplier",
                  f"{count:g} must exceed the noise multiplier {noise:.4g} chosen for "
                  f"targetEpsilon {privacy.target_epsilon:g}")]
            )  # fmt: skip
        adaptive = Adaptive(privacy.target_quantile, privacy.clipping_learning_rate, count)
    return CentralPlan(
        noise, privacy.clipping_norm, privacy.delta, privacy.accountant, rounds,
        calibrated=privacy.noise_multiplier is None, adaptive=adaptive,
    )  # fmt: skip


def clipped(change: Params, norm: float) -> tuple[Params, bool]:
    """``change`` scaled down to L2 norm ``norm`` over all its tensors, if it is longer."""
    length = float(np.sqrt(sum(float(np.sum(c * c)) for c in change)))
    if length <= norm:
        return change, False
    return [c * (norm / length) for c in change], True


@dataclass
class CentralNoise:
    """The server's mechanism and its accountant for one experiment. ``norms`` and
    ``clipped_by_round``: each finished round's clipping norm and clipped updates (from
    result.json on a resumed run, so adaptive clipping goes on where it was)."""

    plan: CentralPlan
    sites: int  # the denominator: the sites the federation started with
    seed: int | None  # None: fresh randomness (privacy.reproducibleNoise off)
    rounds_done: int = 0
    clipped_by_round: list[int] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)
    norm: float = 0.0  # the next round's

    def __post_init__(self) -> None:
        self.norm = self.norm or self.plan.clipping_norm

    def aggregate(self, current: Params, updates: list[Params], server_round: int) -> Params:
        """The noisy mean of the sites' clipped changes, added to ``current``."""
        changes = [[u.astype(np.float64) - c for u, c in zip(update, current, strict=True)]
                   for update in updates]  # fmt: skip
        kept = [clipped(change, self.norm) for change in changes]
        total = [sum(change[i] for change, _ in kept) for i in range(len(current))]
        unclipped = sum(not was for _, was in kept)
        return self.noised(current, total, len(kept), unclipped, server_round)  # type: ignore[arg-type]

    def noised(
        self, current: Params, total: Params, updates: int, unclipped: int, server_round: int
    ) -> Params:
        """``current`` plus the noisy mean of ``total``, the sum of ``updates`` changes each
        clipped to this round's norm (``unclipped`` of them needed no clipping). Secure
        aggregation hands the sum in directly: the sites clipped their own changes."""
        self.clipped_by_round.append(updates - unclipped)
        self.norms.append(self.norm)
        std = self.plan.update_noise * self.norm / self.sites
        rng = np.random.default_rng(
            None if self.seed is None else derive_seed(self.seed, "central-noise", server_round)
        )
        out = []
        for c, t in zip(current, total, strict=True):
            noisy = t / self.sites + rng.normal(0.0, std, c.shape)
            out.append((c.astype(np.float64) + noisy).astype(c.dtype))
        if self.plan.adaptive is not None:
            self.norm = self._next_norm(unclipped, rng)
        self.rounds_done += 1
        return out

    def _next_norm(self, unclipped: int, rng: np.random.Generator) -> float:
        """The geometric update toward the target quantile, from the noisy share of
        updates that fit (a fixed denominator, as for the mean)."""
        adaptive = self.plan.adaptive
        assert adaptive is not None
        share = (unclipped + rng.normal(0.0, adaptive.count_noise)) / self.sites
        return float(
            self.norm * np.exp(-adaptive.learning_rate * (share - adaptive.target_quantile))
        )

    @property
    def epsilon(self) -> float:
        history = [(self.plan.noise_multiplier, 1.0, self.rounds_done)] if self.rounds_done else []
        return epsilon_of(self.plan.accountant, history, self.plan.delta)

    def report(self) -> dict[str, Any]:
        out = {
            "mechanism": MECHANISMS["fixed" if self.plan.adaptive is None else "adaptive"],
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
            "clippingNormByRound": list(self.norms),
        }
        if self.plan.adaptive is not None:
            out["adaptive"] = {
                "targetQuantile": self.plan.adaptive.target_quantile,
                "learningRate": self.plan.adaptive.learning_rate,
                "countNoiseMultiplier": self.plan.adaptive.count_noise,
                "updateNoiseMultiplier": self.plan.update_noise,
                "nextClippingNorm": self.norm,
            }
        return out


def resumed(noise: CentralNoise, before: dict[str, Any] | None) -> CentralNoise:
    """``noise`` carrying on from the report a resumed run's result.json holds."""
    if not before:
        return noise
    noise.clipped_by_round = [int(n) for n in before.get("clippedByRound", [])]
    noise.norms = [float(n) for n in before.get("clippingNormByRound", [])]
    adaptive = before.get("adaptive") or {}
    if noise.plan.adaptive is not None and adaptive.get("nextClippingNorm"):
        noise.norm = float(adaptive["nextClippingNorm"])
    return noise
