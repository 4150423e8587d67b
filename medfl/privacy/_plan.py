"""A site's privacy plan for one experiment: its sampling rate, steps, the noise
multiplier (given, or calibrated for the whole experiment) and the ε expected."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from medfl.privacy._accountant import calibrate, epsilon_of
from medfl.spec._models import Accountant, Privacy

MECHANISM = "DP-SGD (Opacus; sample-level, at the site)"


@dataclass(frozen=True)
class PrivacyPlan:
    """What a site will spend, known before round 1 (it tells the server in its hello)."""

    accountant: Accountant
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float  # batchSize / training rows (1 when a batch holds them all)
    expected_batch_size: int
    steps_per_round: int
    rounds: int
    poisson_sampling: bool
    target_epsilon: float | None  # the experiment's; None: noise given, ε reported
    planned_epsilon: float  # after every round

    @property
    def total_steps(self) -> int:
        return self.steps_per_round * self.rounds

    @property
    def calibrated(self) -> bool:
        return self.target_epsilon is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacyPlan:
        return cls(**d)


def plan_for(privacy: Privacy, rows: int, batch_size: int, steps: int, rounds: int) -> PrivacyPlan:
    """The plan of a site with ``rows`` training rows taking ``steps`` steps a round.
    With a target, the noise is chosen for all ``steps * rounds`` steps at once."""
    assert privacy.delta is not None
    expected = min(batch_size, rows)
    rate = expected / rows
    total = steps * rounds
    if privacy.target_epsilon is not None:
        sigma = calibrate(privacy.target_epsilon, privacy.delta, rate, total, privacy.accountant)
    else:
        assert privacy.noise_multiplier is not None
        sigma = privacy.noise_multiplier
    planned = epsilon_of(privacy.accountant, [(sigma, rate, total)], privacy.delta)
    return PrivacyPlan(
        accountant=privacy.accountant,
        delta=privacy.delta,
        noise_multiplier=sigma,
        max_grad_norm=privacy.max_grad_norm,
        sample_rate=rate,
        expected_batch_size=expected,
        steps_per_round=steps,
        rounds=rounds,
        poisson_sampling=privacy.poisson_sampling,
        target_epsilon=privacy.target_epsilon,
        planned_epsilon=planned,
    )
