"""One round of the batched engine: sample sites, build their batches, train them as
stacks, average the accepted ones, apply the strategy's server step.

Only the sampled sites get weights, gradients and optimiser state, and at most
``CHUNK`` of them at a time: memory grows with the sites a round trains, not with all.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from medfl._seeds import derive_seed
from medfl.errors import TrainingError
from medfl.results._model import VirtualRound
from medfl.simulation._pool import Pool
from medfl.simulation._private import (
    VirtualPrivacy,
    poisson_batches,
    private_stack,
    train_private_stack,
)
from medfl.simulation._shuffle import shuffled_batches
from medfl.simulation._stack import Batches, StackUpdate, train_stack
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
    epsilon: np.ndarray  # with DP-SGD: each site's ε after the round; NaN without


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
    """Each chosen site's batches as pool row numbers in one ``[sites, steps, batch]``
    tensor: drawn for all virtual sites at once, or (the experiment's own sites)
    train_local's very batches, from the same seeds."""
    cfg, seed, device = experiment.training, experiment.training.seed, pool.x.device
    cut = pool.partition
    if pool.report is not None:
        drawn, real, counts = shuffled_batches(cut, chosen, cfg, seed, server_round)
        batches = Batches(
            torch.from_numpy(drawn).to(device),
            torch.from_numpy(real).to(device, torch.float32),
            torch.from_numpy(counts).to(device),
        )
        return batches, cut.sizes[chosen]
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
        local_dp = experiment.privacy.local
        self.privacy = VirtualPrivacy(experiment, pool.partition.sizes) if local_dp else None

    def round(self, server_round: int, params: Params) -> tuple[Params, VirtualRound, SiteFigures]:
        began = time.perf_counter()
        chosen = sample(self.experiment, self.pool.partition.count, server_round)
        device = self.pool.x.device
        start = [torch.from_numpy(np.asarray(p)).to(device) for p in params]
        total = [torch.zeros(p.shape, dtype=torch.float64, device=device) for p in start]
        figures, stack_bytes = [], 0
        generator = self._noise(server_round)
        for at in range(0, len(chosen), CHUNK):
            part = chosen[at : at + CHUNK]
            update, steps = self._train(server_round, part, start, generator)
            sizes = self.pool.partition.sizes[part]
            stack_bytes = max(stack_bytes, update.state_bytes)
            weight = torch.from_numpy(sizes.astype(np.float64)).to(device) * update.finite
            for acc, p in zip(total, update.params, strict=True):
                usable = update.finite.view(-1, *([1] * (p.dim() - 1)))
                acc += torch.tensordot(weight, torch.where(usable, p, 0.0).double(), dims=1)
            figures.append(
                SiteFigures(
                    part,
                    sizes,
                    steps,
                    update.loss.cpu().numpy(),
                    update.finite.cpu().numpy(),
                    self._spend(part, steps),
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

    def _noise(self, server_round: int) -> torch.Generator | None:
        """DP-SGD's generator for the round's noise and Poisson draws: from the seed, or
        (privacy.reproducibleNoise off) fresh OS randomness."""
        if self.privacy is None:
            return None
        privacy, seed = self.experiment.privacy, self.experiment.training.seed
        drawn = derive_seed(seed, "dp", server_round)
        generator = torch.Generator(device=self.pool.x.device)
        return generator.manual_seed(drawn if privacy.reproducible_noise else secrets.randbits(63))

    def _train(
        self,
        server_round: int,
        part: np.ndarray,
        start: list[torch.Tensor],
        generator: torch.Generator | None,
    ) -> tuple[StackUpdate, np.ndarray]:
        pool, experiment = self.pool, self.experiment
        if self.privacy is None or generator is None:
            batches, _ = batches_of(experiment, pool, part, server_round)
            update = train_stack(experiment, start, pool.x, pool.y, batches)
            return update, batches.steps.cpu().numpy()
        plans = [self.privacy.plan(int(n)) for n in pool.partition.sizes[part]]
        steps = np.array([p.steps_per_round for p in plans], dtype=np.int64)
        if experiment.privacy.poisson_sampling:
            cut = pool.partition
            rows = [torch.from_numpy(cut.site_rows(int(i)).astype(np.int64)) for i in part]
            rates = np.array([p.sample_rate for p in plans])
            batches = poisson_batches(rows, steps, rates, generator, pool.x.device)
        else:
            batches, _ = batches_of(experiment, pool, part, server_round)
        stack = private_stack(plans, pool.x.device)
        update = train_private_stack(experiment, start, pool.x, pool.y, batches, stack, generator)
        return update, steps

    def _spend(self, part: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Each site's steps counted (every planned step is taken: Opacus counts an empty
        Poisson batch too), and its ε after them."""
        if self.privacy is None:
            return np.full(len(part), np.nan)
        self.privacy.steps[part] += steps
        return self.privacy.epsilon(part)

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
