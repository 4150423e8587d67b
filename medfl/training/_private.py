"""DP-SGD at one site (Opacus): per-example gradients clipped to ``maxGradNorm``,
Gaussian noise added, each step signalled to the site's one accountant.

The same loop as ``train_local`` otherwise: rows drawn from generators seeded for
this site and round (or, without reproducible noise, from the OS), dropout seeded.
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from medfl._seeds import derive_seed
from medfl.privacy._accountant import SiteAccountant
from medfl.privacy._plan import PrivacyPlan
from medfl.spec import Training
from medfl.spec._models import FedProx, StrategySpec
from medfl.training._local import (
    LocalData,
    LocalUpdate,
    Params,
    _batches,
    _train_mode,
    get_params,
    set_params,
)


def _base_optimizer(params: list[nn.Parameter], cfg: Training) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def _generator(seed: int, purpose: str, reproducible: bool) -> torch.Generator:
    drawn = derive_seed(seed, purpose) if reproducible else secrets.randbits(63)
    return torch.Generator().manual_seed(drawn)


def poisson_batches(
    n: int, steps: int, rate: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """Each row joins each batch with probability ``rate``; a batch may be empty."""
    return [
        torch.nonzero(torch.rand(n, generator=generator) < rate).flatten() for _ in range(steps)
    ]


def _add_proximal(params: list[nn.Parameter], anchor: list[torch.Tensor], mu: float) -> None:
    """FedProx's term after the noise: it reads no data, so it costs no ε."""
    for p, a in zip(params, anchor, strict=True):
        if p.grad is not None:
            p.grad.add_(p.detach() - a, alpha=mu)


def train_private(
    model: nn.Module,
    params: Params,
    data: LocalData,
    cfg: Training,
    strategy: StrategySpec,
    seed: int,
    plan: PrivacyPlan,
    accountant: SiteAccountant,
    held: Sequence[nn.Module] = (),
    reproducible: bool = True,
) -> LocalUpdate:
    """One round of DP-SGD from ``params`` on this site's training split."""
    set_params(model, params)
    _train_mode(model, held)
    trainable = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in trainable]
    mu = strategy.proximal_mu if isinstance(strategy, FedProx) else 0.0
    base = _base_optimizer(trainable, cfg)
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=True)
    optimizer = DPOptimizer(
        base,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        expected_batch_size=plan.expected_batch_size,
        loss_reduction="mean",
        generator=_generator(seed, "dp-noise", reproducible),
    )
    optimizer.attach_step_hook(lambda _: accountant.step(plan.noise_multiplier, plan.sample_rate))
    n, steps = len(data), plan.steps_per_round
    if plan.poisson_sampling:
        batches = poisson_batches(
            n, steps, plan.sample_rate, _generator(seed, "poisson", reproducible)
        )
    else:
        batches = _batches(n, steps, cfg.batch_size, seed)
    losses: list[float] = []
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # an empty batch has no input needing a gradient: torch warns, Opacus copes
            warnings.simplefilter("ignore", UserWarning)
            torch.manual_seed(derive_seed(seed, "dropout"))
            for step, idx in enumerate(batches):
                optimizer.zero_grad(set_to_none=True)
                logits = wrapped(data.x[idx]).squeeze(-1)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    logits, data.y[idx], reduction="sum"
                )
                value = float(loss.detach())
                if not math.isfinite(value):
                    return LocalUpdate(params, n, value, step, "local loss is not finite")
                loss.backward()
                if optimizer.pre_step():  # clip, noise, scale; the accountant counts the step
                    if mu:
                        _add_proximal(trainable, anchor, mu)
                    base.step()
                if len(idx):
                    losses.append(value / len(idx))
    finally:
        wrapped._close()  # the plain module again: its hooks and per-example buffers gone
    new = get_params(model)
    problem = None if all(np.isfinite(p).all() for p in new) else "update is not finite"
    mean = sum(losses) / len(losses) if losses else math.nan
    return LocalUpdate(new, n, mean, steps, problem)
