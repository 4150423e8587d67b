"""One round of the batched engine: sample sites, build their batches, train them as
stacks, average the accepted ones, apply the strategy's server step.

Only the sampled sites get weights, gradients and optimiser state, and at most
``CHUNK`` of them at a time: memory grows with the sites a round trains, not with all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from medfl._seeds import derive_seed
from medfl.errors import TrainingError
from medfl.results._model import VirtualRound
from medfl.simulation._pool import Pool
from medfl.simulation._stack import Batches, train_stack
from medfl.spec import Experiment
from medfl.training import Params, ServerOptimizer
from medfl.training._local import _batches, local_steps

CHUNK = 8192  # sites per stacked computation: bounds memory when many sites are sampled


@dataclass
class SiteFigures:
    """Each sampled site's figures in one round (arrays, one entry per site)."""

    sites: np.ndarray  # int64 site numbers
    examples: np.ndarray
    steps: np.ndarray
    loss: np.ndarray  # float64
    ok: np.ndarray  # bool: accepted into the average


def sample(experiment: Experiment, sites: int, server_round: int) -> np.ndarray:
    """The round's sites, sorted; all of them when every site takes part."""
    assert experiment.simulation is not None
    k = experiment.simulation.per_round(sites)
    if k >= sites:
        return np.arange(sites)
    rng = np.random.default_rng(derive_seed(experiment.training.seed, "sample", server_round))
    return np.sort(rng.choice(sites, size=k, replace=False))


def batches_of(
    experiment: Experiment, pool: Pool, chosen: np.ndarray, server_round: int
) -> tuple[Batches, np.ndarray]:
    """train_local's batches for each chosen site (the same seeds, so the same rows),
    as pool row numbers padded into one ``[sites, steps, batch]`` tensor."""
    cfg, seed = experiment.training, experiment.training.seed
    cut = pool.partition
    flat: list[torch.Tensor] = []
    steps = np.zeros(len(chosen), dtype=np.int64)
    for k, i in enumerate(chosen.tolist()):
        rows = torch.from_numpy(cut.site_rows(i).astype(np.int64))
        steps[k] = local_steps(len(rows), cfg)
        site_seed = derive_seed(seed, cut.site_name(i), server_round)
        flat += [rows[b] for b in _batches(len(rows), int(steps[k]), cfg.batch_size, site_seed)]
    most = int(steps.max())
    padded: list[torch.Tensor] = []
    empty = torch.zeros(0, dtype=torch.int64)
    at = 0
    for n in steps.tolist():
        padded += flat[at : at + n] + [empty] * (most - n)
        at += n
    grid = pad_sequence(padded, batch_first=True, padding_value=-1)
    grid = grid.view(len(chosen), most, -1).to(pool.x.device)
    mask = (grid >= 0).float()
    sizes = cut.sizes[chosen]
    return Batches(grid.clamp(min=0), mask, torch.from_numpy(steps).to(pool.x.device)), sizes


class BatchedRounds:
    """The server of the batched engine: its strategy state and the global model."""

    def __init__(self, experiment: Experiment, pool: Pool) -> None:
        self.experiment = experiment
        self.pool = pool
        self.optimizer = ServerOptimizer(experiment.strategy)

    def round(self, server_round: int, params: Params) -> tuple[Params, VirtualRound, SiteFigures]:
        began = time.perf_counter()
        chosen = sample(self.experiment, self.pool.partition.count, server_round)
        device = self.pool.x.device
        start = [torch.from_numpy(np.asarray(p)).to(device) for p in params]
        total = [torch.zeros(p.shape, dtype=torch.float64, device=device) for p in start]
        figures, stack_bytes = [], 0
        for at in range(0, len(chosen), CHUNK):
            part = chosen[at : at + CHUNK]
            batches, sizes = batches_of(self.experiment, self.pool, part, server_round)
            update = train_stack(self.experiment, start, self.pool.x, self.pool.y, batches)
            stack_bytes = max(stack_bytes, update.state_bytes)
            weight = torch.from_numpy(sizes.astype(np.float64)).to(device) * update.finite
            for acc, p in zip(total, update.params, strict=True):
                usable = update.finite.view(-1, *([1] * (p.dim() - 1)))
                acc += torch.tensordot(weight, torch.where(usable, p, 0.0).double(), dims=1)
            figures.append(
                SiteFigures(
                    part,
                    sizes,
                    batches.steps.cpu().numpy(),
                    update.loss.cpu().numpy(),
                    update.finite.cpu().numpy(),
                )
            )
        sites = _joined(figures)
        average = self._average(server_round, total, sites, params)
        new = self.optimizer.apply(params, average)
        accepted = sites.examples[sites.ok]
        loss = float(np.average(sites.loss[sites.ok], weights=accepted)) if accepted.size else None
        record = VirtualRound(
            round=server_round,
            sampled=len(chosen),
            accepted=int(sites.ok.sum()),
            rejected=int((~sites.ok).sum()),
            train_loss=loss,
            seconds=time.perf_counter() - began,
            stack_bytes=stack_bytes,
        )
        return new, record, sites

    def _average(
        self, server_round: int, total: list[torch.Tensor], sites: SiteFigures, current: Params
    ) -> Params:
        need = min(self.experiment.strategy.min_sites or len(sites.ok), len(sites.ok))
        accepted = int(sites.ok.sum())
        if accepted < need:
            raise TrainingError(
                f"round {server_round}: only {accepted} of {len(sites.ok)} sampled site(s) "
                f"returned a usable update (loss or weights not finite) and minSites is {need}"
            )
        examples = float(sites.examples[sites.ok].sum())
        return [
            (t / examples).cpu().numpy().astype(c.dtype)
            for t, c in zip(total, current, strict=True)
        ]


def _joined(parts: list[SiteFigures]) -> SiteFigures:
    return SiteFigures(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in SiteFigures.__dataclass_fields__)
    )
