"""The zoo's models with a leading site dimension: every tensor of the state dict is
stacked ``[sites, ...]`` and one batched matrix product serves every site.

The maths is ``train_local``'s, step for step: the same batches (ragged batches padded
and masked), the mean loss over each batch's real rows, and torch's SGD / Adam updates
(a site with no batch at a step is left as it is, its optimiser state too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional

from medfl.errors import SpecError
from medfl.spec import Experiment, LogisticModel, MlpModel, Training
from medfl.spec._models import FedProx

_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": functional.gelu}
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, as the zoo builds it


def check_supported(experiment: Experiment) -> None:
    """What the stacked models do not compute (yet), named before any work."""
    model, problems = experiment.model, []
    if not isinstance(model, LogisticModel | MlpModel):
        problems.append(("model.type", "the batched engine stacks the zoo's logistic and mlp"))
    if isinstance(model, MlpModel) and model.normalization == "batch":
        problems.append(("model.normalization", "'batch' is not stacked; use 'layer' or 'none'"))
    if isinstance(model, MlpModel) and model.dropout:
        problems.append(("model.dropout", "dropout is not stacked by the batched engine"))
    if model.freeze:
        problems.append(("model.freeze", "frozen layers are not supported by the batched engine"))
    personal = experiment.personalization
    if personal.local_layers or personal.local_normalization or personal.fine_tunes:
        problems.append(("personalization", "per-site models are not kept by the batched engine"))
    if experiment.privacy.central:
        problems.append(("privacy.mode", "'central' is not supported by the batched engine"))
    if experiment.privacy.local and experiment.privacy.repair_model:
        problems.append(("privacy.repairModel", "the batched engine stacks no BatchNorm"))
    if problems:
        raise SpecError(problems)


def forward(spec: LogisticModel | MlpModel, params: Sequence[torch.Tensor], x: torch.Tensor):
    """Logits ``[sites, rows]`` of ``x`` ``[sites, rows, features]``; ``params`` in the zoo
    model's state_dict order, each with the site dimension first."""
    if isinstance(spec, LogisticModel):
        weight, bias = params
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)).squeeze(-1)
    h, i = x, 0
    act = _ACTIVATIONS[spec.activation]
    for _ in spec.hidden:
        weight, bias = params[i], params[i + 1]
        h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        i += 2
        if spec.normalization == "layer":
            gamma, beta = params[i], params[i + 1]
            h = functional.layer_norm(h, h.shape[-1:], eps=LAYER_NORM_EPS)
            h = h * gamma.unsqueeze(1) + beta.unsqueeze(1)
            i += 2
        h = act(h)
    weight, bias = params[i], params[i + 1]
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)).squeeze(-1)


@dataclass
class Batches:
    """Every site's batches of a round as pool row numbers ``[sites, steps, batch]``;
    ``mask`` is 1 for a real row, 0 for padding (a short last batch, a site done early)."""

    rows: torch.Tensor  # int64
    mask: torch.Tensor  # float32
    steps: torch.Tensor  # int64 [sites]: each site's own number of steps


class StackedOptimizer:
    """torch.optim.SGD (momentum, weight decay) or Adam, per site, on stacked tensors."""

    def __init__(self, params: list[torch.Tensor], cfg: Training) -> None:
        self.cfg = cfg
        self.params = params
        adam = cfg.optimizer == "adam"
        momentum = cfg.optimizer == "sgd" and cfg.momentum > 0
        self.m = [torch.zeros_like(p) for p in params] if adam or momentum else []
        self.v = [torch.zeros_like(p) for p in params] if adam else []
        self.t = torch.zeros(params[0].shape[0], dtype=torch.float64, device=params[0].device)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.m, *self.v])

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor) -> None:
        """One step for the sites where ``active``; the others keep weights and state."""
        cfg = self.cfg
        self.t += active.double()
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            keep = active.view(-1, *([1] * (p.dim() - 1)))
            if cfg.weight_decay:
                g = g + cfg.weight_decay * p
            if cfg.optimizer == "adam":
                new = self._adam(i, p, g, keep)
            elif self.m:
                self.m[i] = torch.where(keep, cfg.momentum * self.m[i] + g, self.m[i])
                new = p - cfg.learning_rate * self.m[i]
            else:
                new = p - cfg.learning_rate * g
            p.copy_(torch.where(keep, new, p))

    def _adam(self, i: int, p: torch.Tensor, g: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as _local uses
        self.m[i] = torch.where(keep, beta1 * self.m[i] + (1 - beta1) * g, self.m[i])
        self.v[i] = torch.where(keep, beta2 * self.v[i] + (1 - beta2) * g * g, self.v[i])
        t = self.t.clamp(min=1).view(-1, *([1] * (p.dim() - 1)))
        bias1 = (1 - beta1**t).to(p.dtype)
        bias2_sqrt = torch.sqrt(1 - beta2**t).to(p.dtype)
        denom = self.v[i].sqrt() / bias2_sqrt + eps
        return p - (self.cfg.learning_rate / bias1) * self.m[i] / denom


@dataclass
class StackUpdate:
    params: list[torch.Tensor]  # each [sites, ...]
    loss: torch.Tensor  # float64 [sites]: mean training loss over the site's steps
    finite: torch.Tensor  # bool [sites]: every loss and weight finite
    state_bytes: int  # weights, gradients and optimiser state of the stack


def train_stack(
    experiment: Experiment,
    start: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batches: Batches,
) -> StackUpdate:
    """Train every site of the stack from the global ``start`` (unstacked tensors) on
    its batches of the pool ``x``, ``y``. A stack of one is one site's ``train_local``."""
    spec, cfg = experiment.model, experiment.training
    assert isinstance(spec, LogisticModel | MlpModel)
    sites, steps = batches.rows.shape[0], batches.rows.shape[1]
    params = [p.unsqueeze(0).repeat(sites, *([1] * p.dim())).requires_grad_() for p in start]
    anchor = [p.detach().clone() for p in params]
    strategy = experiment.strategy
    mu = strategy.proximal_mu if isinstance(strategy, FedProx) else 0.0
    optimizer = StackedOptimizer(params, cfg)
    total = torch.zeros(sites, dtype=torch.float64, device=x.device)
    finite = torch.ones(sites, dtype=torch.bool, device=x.device)
    for t in range(steps):
        rows, mask = batches.rows[:, t], batches.mask[:, t]
        count = mask.sum(1)
        active = count > 0
        logits = forward(spec, params, x[rows])
        losses = functional.binary_cross_entropy_with_logits(logits, y[rows], reduction="none")
        per_site = (losses * mask).sum(1) / count.clamp(min=1)
        objective = per_site
        if mu:
            prox = sum(
                ((p - a) ** 2).flatten(1).sum(1) for p, a in zip(params, anchor, strict=True)
            )
            objective = per_site + 0.5 * mu * prox * active
        grads = torch.autograd.grad(objective.sum(), params)
        value = objective.detach()  # the proximal term included, as train_local reports
        finite &= torch.isfinite(value) | ~active
        optimizer.step(grads, active & finite)
        total += torch.where(active, value.double(), 0.0)
    new = [p.detach() for p in params]
    for p in new:
        finite &= torch.isfinite(p.flatten(1)).all(1)
    weights = sum(p.numel() * p.element_size() for p in new)
    return StackUpdate(
        new, total / batches.steps.clamp(min=1), finite, 2 * weights + optimizer.nbytes
    )
