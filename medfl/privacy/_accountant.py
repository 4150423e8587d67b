"""Opacus's accountants, kept for a whole experiment at each site.

One accountant per site lives across every round (in a site process, and over Flower
messages through the node's state): its history of (noise multiplier, sample rate,
steps) is what ε is computed from, never a fresh one per round.
"""

from __future__ import annotations

import copy
import warnings
from functools import lru_cache
from typing import Any

from opacus.accountants import IAccountant, create_accountant
from opacus.accountants.utils import get_noise_multiplier

from medfl.spec._models import Accountant


def make_accountant(name: Accountant) -> IAccountant:
    with warnings.catch_warnings():  # GDP warns on every construction that it is experimental
        warnings.simplefilter("ignore")
        return create_accountant(mechanism=name)


def epsilon_of(name: Accountant, history: list[tuple[float, float, int]], delta: float) -> float:
    """ε of a history, as Opacus computes it; 0 before any step."""
    if not history:
        return 0.0
    return _epsilon(name, tuple((float(n), float(q), int(s)) for n, q, s in history), delta)


@lru_cache(maxsize=1024)
def _epsilon(
    name: Accountant, history: tuple[tuple[float, float, int], ...], delta: float
) -> float:
    """Cached: an RDP figure at small noise takes Opacus a tenth of a second, and the
    budget check before a round asks for the one after it again."""
    accountant = make_accountant(name)
    accountant.history = [tuple(h) for h in history]
    return float(accountant.get_epsilon(delta=delta))


@lru_cache(maxsize=256)
def calibrate(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: Accountant
) -> float:
    """The smallest noise multiplier (Opacus's bisection, tolerance 0.01) whose ε after
    ``steps`` steps at ``sample_rate`` is at most the target. Deterministic: cached."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        )


class SiteAccountant:
    """A site's one accountant for the experiment: steps are signalled by the DP
    optimiser as they happen; its history travels as plain data between processes."""

    def __init__(self, name: Accountant, delta: float) -> None:
        self.name = name
        self.delta = delta
        self.accountant = make_accountant(name)

    @property
    def history(self) -> list[tuple[float, float, int]]:
        return list(self.accountant.history)

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self.accountant.history)

    def step(self, noise_multiplier: float, sample_rate: float) -> None:
        self.accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)

    def resume(self, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        """The history of ``steps`` steps of one plan, as Opacus keeps it (consecutive
        steps of the same noise and rate are one entry): a resumed run's ε is the whole
        run's to the last bit."""
        self.accountant.history = [(noise_multiplier, sample_rate, steps)] if steps else []

    def epsilon(self) -> float:
        return epsilon_of(self.name, self.history, self.delta)

    def epsilon_after(self, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """ε if ``steps`` more steps were taken (the accountant itself is unchanged)."""
        ahead = make_accountant(self.name)
        ahead.history = copy.deepcopy(self.accountant.history)
        for _ in range(steps):
            ahead.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
        return epsilon_of(self.name, ahead.history, self.delta)

    def state(self) -> dict[str, Any]:
        state = self.accountant.state_dict()
        return {"mechanism": state["mechanism"], "history": [list(h) for h in state["history"]]}

    def load(self, state: dict[str, Any]) -> None:
        history = [(float(n), float(q), int(s)) for n, q, s in state["history"]]
        self.accountant.load_state_dict({"mechanism": state["mechanism"], "history": history})
