"""Local training and evaluation at one site, framework-free.

Both engines (fast and Flower) call exactly these two functions, so they compute
the same thing. Parameters travel as a list of numpy arrays in state_dict order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medfl._seeds import derive_seed
from medfl.privacy import PrivacySpent
from medfl.spec import Training
from medfl.spec._models import FedProx, StrategySpec
from medfl.training._metrics import Metrics, binary_metrics

Params = list[np.ndarray]


@dataclass
class LocalData:
    """One split of one site, as tensors."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray) -> LocalData:
        return cls(
            torch.from_numpy(np.ascontiguousarray(x, np.float32)),
            torch.from_numpy(np.ascontiguousarray(y, np.float32)),
        )

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class LocalUpdate:
    params: Params
    num_examples: int
    loss: float
    steps: int
    problem: str | None = None  # why the server must reject this update
    privacy: PrivacySpent | None = None  # with DP: this site's ε so far


def get_params(model: nn.Module) -> Params:
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_params(model: nn.Module, params: Params) -> None:
    keys = list(model.state_dict().keys())
    if len(keys) != len(params):
        raise ValueError(f"model has {len(keys)} tensors, got {len(params)}")
    state = {k: torch.from_numpy(np.asarray(p)).clone() for k, p in zip(keys, params, strict=True)}
    model.load_state_dict(state, strict=True)


class _PlainSgd:
    """``w -= lr * grad``, the same arithmetic as torch.optim.SGD without momentum or
    weight decay, minus its per-step bookkeeping (a third of a small model's step)."""

    def __init__(self, params: list[nn.Parameter], lr: float) -> None:
        self.params = params
        self.lr = lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


def _optimizer(params: list[nn.Parameter], cfg: Training) -> torch.optim.Optimizer | _PlainSgd:
    if cfg.optimizer == "sgd" and not cfg.momentum and not cfg.weight_decay:
        return _PlainSgd(params, cfg.learning_rate)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params,
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


def local_steps(n: int, cfg: Training, pairs: bool = False) -> int:
    if cfg.local_steps is not None:
        return cfg.local_steps
    if pairs and n > cfg.batch_size and n % cfg.batch_size == 1:  # see _batches
        return max(1, math.ceil(cfg.epochs_or_default * (n // cfg.batch_size)))
    return max(1, math.ceil(cfg.epochs_or_default * n / cfg.batch_size))


def _batches(
    n: int, steps: int, batch_size: int, seed: int, pairs: bool = False
) -> list[torch.Tensor]:
    """Successive shuffles of the rows, cut into `steps` batches (the last of an epoch
    may be short), drawn from a generator seeded for this site and round. With
    ``pairs`` (BatchNorm in training), a last batch of one row joins the one before."""
    generator = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        epoch = list(torch.randperm(n, generator=generator).split(batch_size))
        if pairs and len(epoch) > 1 and len(epoch[-1]) == 1:
            epoch[-2:] = [torch.cat(epoch[-2:])]
        batches += epoch
    return batches[:steps]


def _train_mode(model: nn.Module, held: Sequence[nn.Module]) -> bool:
    """Training mode but for ``held`` (frozen normalisation layers); True when a
    BatchNorm trains, which cannot on a batch of one row."""
    model.train()
    for module in held:
        module.eval()
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()
    )


def train_local(
    model: nn.Module,
    params: Params,
    data: LocalData,
    cfg: Training,
    strategy: StrategySpec,
    seed: int,
    held: Sequence[nn.Module] = (),
) -> LocalUpdate:
    """Train from ``params`` (the whole state) on this site's training split. Frozen
    parameters (``requires_grad`` off) and ``held`` layers do not change."""
    set_params(model, params)
    pairs = _train_mode(model, held)
    if pairs and len(data) < 2:
        return LocalUpdate(params, len(data), math.nan, 0, "BatchNorm cannot train on one row")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(trainable, cfg)
    loss_fn = nn.BCEWithLogitsLoss()
    anchor = [p.detach().clone() for p in trainable]
    mu = strategy.proximal_mu if isinstance(strategy, FedProx) else 0.0
    steps = local_steps(len(data), cfg, pairs)
    total = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "dropout"))
        for step, idx in enumerate(_batches(len(data), steps, cfg.batch_size, seed, pairs)):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(data.x[idx]).squeeze(-1), data.y[idx])
            if mu:
                prox = sum(((p - a) ** 2).sum() for p, a in zip(trainable, anchor, strict=True))
                loss = loss + 0.5 * mu * prox
            value = float(loss.detach())
            if not math.isfinite(value):
                return LocalUpdate(params, len(data), value, step, "local loss is not finite")
            loss.backward()
            optimizer.step()
            total += value
    new = get_params(model)
    problem = None if all(np.isfinite(p).all() for p in new) else "update is not finite"
    return LocalUpdate(new, len(data), total / steps, steps, problem)


@torch.no_grad()
def evaluate(model: nn.Module, params: Params, data: LocalData, threshold: float) -> Metrics:
    """Loss and classification metrics of ``params`` on one split."""
    if len(data) == 0:
        return {}
    set_params(model, params)
    model.eval()
    logits = model(data.x).squeeze(-1)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, data.y))
    prob = torch.sigmoid(logits).double().numpy()
    return binary_metrics(data.y.numpy(), prob, loss, threshold)
