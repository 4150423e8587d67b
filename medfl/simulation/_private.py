"""DP-SGD at every virtual site of a stack, vectorised: per-example gradients by
``torch.func`` (vmap over sites, vmap over rows, grad), each clipped to maxGradNorm,
summed, Gaussian noise added, divided by the expected batch size — Opacus's
DPOptimizer arithmetic (its clip factor, ``loss_reduction='mean'``), in one computation.

Accounting is the privacy section's: each site's plan (``plan_for``: its rows, batch
size, steps per round and every round of the experiment) and Opacus's accountant over
the steps it actually took. Sites of one size share a plan, so ε is computed once per
(size, steps taken), never once per site.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import grad, vmap
from torch.nn import functional

from medfl.privacy._accountant import epsilon_of
from medfl.privacy._plan import PrivacyPlan, plan_for
from medfl.simulation._stack import Batches, StackedOptimizer, StackUpdate, forward
from medfl.spec import Experiment, LogisticModel, MlpModel
from medfl.spec._models import FedProx
from medfl.training._local import local_steps

CLIP_EPS = 1e-6  # Opacus's per_sample_clip_factor: max_grad_norm / (norm + 1e-6)


class VirtualPrivacy:
    """Every site's plan (by its size) and the DP-SGD steps it has taken so far."""

    def __init__(self, experiment: Experiment, sizes: np.ndarray) -> None:
        self.experiment = experiment
        self.sizes = sizes
        self.steps = np.zeros(len(sizes), dtype=np.int64)
        self._plans: dict[int, PrivacyPlan] = {}

    def plan(self, rows: int) -> PrivacyPlan:
        if rows not in self._plans:
            privacy, training = self.experiment.privacy, self.experiment.training
            steps = local_steps(rows, training)
            self._plans[rows] = plan_for(privacy, rows, training.batch_size, steps, training.rounds)
        return self._plans[rows]

    def epsilon(self, sites: np.ndarray) -> np.ndarray:
        """ε of each site after the steps it took: Opacus's accountant on the history
        [(σ, q, steps)], which is what a site's own accountant holds after them."""
        out = np.zeros(len(sites))
        pairs = np.stack([self.sizes[sites], self.steps[sites]], axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        for k, (rows, steps) in enumerate(unique.tolist()):
            plan = self.plan(rows)
            history = [(plan.noise_multiplier, plan.sample_rate, steps)] if steps else []
            out[inverse.ravel() == k] = epsilon_of(plan.accountant, history, plan.delta)
        return out

    def summary(self) -> dict[str, Any]:
        eps = self.epsilon(np.arange(len(self.sizes)))
        plans = [self.plan(int(n)) for n in np.unique(self.sizes)]
        privacy = self.experiment.privacy
        return {
            "accountant": privacy.accountant,
            "delta": float(privacy.delta or 0.0),
            "targetEpsilon": privacy.target_epsilon,
            "maxGradNorm": privacy.max_grad_norm,
            "noiseMultiplier": {
                "min": min(p.noise_multiplier for p in plans),
                "max": max(p.noise_multiplier for p in plans),
            },
            "plannedEpsilonMax": max(p.planned_epsilon for p in plans),
            "epsilonMax": float(eps.max()),
            "epsilonMedian": float(np.median(eps)),
            "sitesTrained": int((self.steps > 0).sum()),
            "poissonSampling": privacy.poisson_sampling,
        }


def poisson_batches(
    pool_rows: list[torch.Tensor], steps: np.ndarray, rates: np.ndarray, generator, device
) -> Batches:
    """Each site's rows, each joining each step's batch with probability q (its plan's
    sample rate), as ``[sites, steps, rows]`` with the mask marking who joined."""
    sites, most_rows, most_steps = len(pool_rows), max(len(r) for r in pool_rows), int(steps.max())
    rows = torch.zeros(sites, most_rows, dtype=torch.int64)
    real = torch.zeros(sites, most_rows, dtype=torch.bool)
    for k, r in enumerate(pool_rows):
        rows[k, : len(r)] = r
        real[k, : len(r)] = True
    rows, real = rows.to(device), real.to(device)
    draw = torch.rand(sites, most_steps, most_rows, generator=generator, device=device)
    rate = torch.from_numpy(rates).float().to(device).view(-1, 1, 1)
    stepped = torch.arange(most_steps, device=device).view(1, -1, 1) < torch.from_numpy(steps).to(
        device
    ).view(-1, 1, 1)
    mask = ((draw < rate) & real.unsqueeze(1) & stepped).float()
    grid = rows.unsqueeze(1).expand(sites, most_steps, most_rows)
    return Batches(grid, mask, torch.from_numpy(steps).to(device))


def private_gradients(
    spec: LogisticModel | MlpModel,
    params: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    max_grad_norm: float,
    noise_std: torch.Tensor,
    expected: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per site: (Σ clipped per-example gradients + N(0, noise_std²)) / expected batch
    size, and each row's loss. ``x`` ``[sites, rows, features]``; ``mask`` marks real rows."""

    def row_loss(site_params, row_x, row_y):
        stacked = [p.unsqueeze(0) for p in site_params]
        logit = forward(spec, stacked, row_x.view(1, 1, -1)).view(())
        return functional.binary_cross_entropy_with_logits(logit, row_y)

    per_row = vmap(vmap(grad(row_loss), in_dims=(None, 0, 0)), in_dims=(0, 0, 0))
    grads = per_row(tuple(params), x, y)  # each [sites, rows, *shape]
    norms = torch.sqrt(sum(g.flatten(2).pow(2).sum(2) for g in grads))
    factor = (max_grad_norm / (norms + CLIP_EPS)).clamp(max=1.0) * mask
    out = []
    for g in grads:
        summed = torch.einsum("sb,sb...->s...", factor, g)
        noise = torch.randn(summed.shape, generator=generator, device=summed.device)
        shape = (-1, *([1] * (summed.dim() - 1)))
        out.append((summed + noise * noise_std.view(shape)) / expected.view(shape))
    with torch.no_grad():
        losses = functional.binary_cross_entropy_with_logits(
            forward(spec, params, x), y, reduction="none"
        )
    return out, losses


@dataclass
class PrivateStack:
    noise_std: torch.Tensor  # [sites]: σ · maxGradNorm of each site's plan
    expected: torch.Tensor  # [sites]: each plan's expected batch size


def private_stack(plans: Sequence[PrivacyPlan], device: torch.device) -> PrivateStack:
    return PrivateStack(
        noise_std=torch.tensor(
            [p.noise_multiplier * p.max_grad_norm for p in plans], device=device
        ),
        expected=torch.tensor([float(p.expected_batch_size) for p in plans], device=device),
    )


def train_private_stack(
    experiment: Experiment,
    start: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batches: Batches,
    dp: PrivateStack,
    generator: torch.Generator,
) -> StackUpdate:
    """train_private for a stack: every step a site's plan has is taken, an empty
    Poisson batch included (noise only), as Opacus's optimiser does."""
    spec, cfg = experiment.model, experiment.training
    assert isinstance(spec, LogisticModel | MlpModel)
    sites, steps = batches.rows.shape[0], batches.rows.shape[1]
    params = [p.unsqueeze(0).repeat(sites, *([1] * p.dim())).clone() for p in start]
    anchor = [p.clone() for p in params]
    strategy = experiment.strategy
    mu = strategy.proximal_mu if isinstance(strategy, FedProx) else 0.0
    optimizer = StackedOptimizer(params, cfg)
    total = torch.zeros(sites, dtype=torch.float64, device=x.device)
    counted = torch.zeros(sites, dtype=torch.float64, device=x.device)
    finite = torch.ones(sites, dtype=torch.bool, device=x.device)
    clip = experiment.privacy.max_grad_norm
    for t in range(steps):
        rows, mask = batches.rows[:, t], batches.mask[:, t]
        active = batches.steps > t
        grads, losses = private_gradients(
            spec, params, x[rows], y[rows], mask, clip, dp.noise_std, dp.expected, generator
        )
        if mu:  # after the noise: it reads no data (as _private._add_proximal)
            grads = [g + mu * (p - a) for g, p, a in zip(grads, params, anchor, strict=True)]
        count = mask.sum(1)
        value = (losses * mask).sum(1) / count.clamp(min=1)
        finite &= torch.isfinite(value) | (count == 0)
        optimizer.step(grads, active & finite)
        nonempty = count > 0
        total += torch.where(nonempty, value.double(), 0.0)
        counted += nonempty.double()
    for p in params:
        finite &= torch.isfinite(p.flatten(1)).all(1)
    weights = sum(p.numel() * p.element_size() for p in params)
    loss = torch.where(counted > 0, total / counted.clamp(min=1), torch.nan)
    return StackUpdate(params, loss, finite, 2 * weights + optimizer.nbytes)
