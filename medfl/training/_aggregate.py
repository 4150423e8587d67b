"""Server-side maths: example-weighted averaging and the server optimisers (FedOpt).

FedAdam / FedYogi / FedAdagrad follow Reddi et al., "Adaptive Federated
Optimization" (2021): the averaged client change is a pseudo-gradient that a
server optimiser applies to the global model. Unlike the paper (and FLamby), and
like Flower's FedAdam, Adam's moments are bias-corrected: the first steps are
``serverLearningRate`` in size rather than lr·(1-β1)/√(1-β2) (about 3× larger at
β2 = 0.999), so settings tuned without correction need a larger server rate.
"""

from __future__ import annotations

import numpy as np

from medfl.spec._models import FedAdagrad, FedAdam, FedYogi, StrategySpec
from medfl.training._local import Params


def weighted_average(updates: list[tuple[Params, int]]) -> Params:
    """Mean of the sites' parameters, weighted by their training examples."""
    total = sum(n for _, n in updates)
    if total <= 0:
        raise ValueError("no training examples to aggregate")
    out = [np.zeros_like(p, dtype=np.float64) for p in updates[0][0]]
    for params, n in updates:
        for acc, p in zip(out, params, strict=True):
            acc += p.astype(np.float64) * (n / total)
    return [a.astype(p.dtype) for a, p in zip(out, updates[0][0], strict=True)]


class ServerOptimizer:
    """Holds the global model's server-side state; FedAvg/FedProx take the average."""

    def __init__(self, strategy: StrategySpec) -> None:
        self.strategy = strategy
        self.step_count = 0
        self.m: Params = []
        self.v: Params = []

    def apply(self, current: Params, average: Params) -> Params:
        self.step_count += 1
        if not isinstance(self.strategy, FedAdam | FedYogi | FedAdagrad):
            return [a.copy() for a in average]
        s = self.strategy
        delta = [
            a.astype(np.float64) - c.astype(np.float64)
            for a, c in zip(average, current, strict=True)
        ]
        if not self.m:
            self.m = [np.zeros_like(d) for d in delta]
            self.v = [np.zeros_like(d) for d in delta]
        new = []
        for i, d in enumerate(delta):
            self.m[i] = s.beta1 * self.m[i] + (1 - s.beta1) * d
            self.v[i] = self._second_moment(self.v[i], d)
            m_hat, v_hat = self.m[i], self.v[i]
            if isinstance(s, FedAdam):
                m_hat = m_hat / (1 - s.beta1**self.step_count)
                v_hat = v_hat / (1 - s.beta2**self.step_count)
            step = s.server_learning_rate * m_hat / (np.sqrt(v_hat) + s.tau)
            new.append((current[i].astype(np.float64) + step).astype(current[i].dtype))
        return new

    def _second_moment(self, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        s = self.strategy
        assert isinstance(s, FedAdam | FedYogi | FedAdagrad)
        d2 = d * d
        if isinstance(s, FedAdagrad):
            return v + d2
        if isinstance(s, FedYogi):
            return v - (1 - s.beta2) * d2 * np.sign(v - d2)
        return s.beta2 * v + (1 - s.beta2) * d2

    def state(self) -> dict[str, object]:
        return {"step": self.step_count, "m": self.m, "v": self.v}

    def load_state(self, state: dict[str, object]) -> None:
        self.step_count = int(state["step"])  # type: ignore[call-overload]
        self.m = list(state["m"])  # type: ignore[call-overload]
        self.v = list(state["v"])  # type: ignore[call-overload]
