"""Every virtual site's batches of a round at once, without a loop over sites.

``train_local``'s batching (successive shuffles of a site's rows, each cut into
batches of ``batchSize``, the last of an epoch short, ``steps`` batches in all) drawn
for thousands of sites in a few array operations: each row's place in each epoch's
shuffle is the order of a counter-based hash (SplitMix64) of (round seed, site number,
epoch, row). So a site's batches depend on the seed, the round and the site alone:
not on which other sites were sampled, on chunking, or on the device.

The experiment's own sites (no virtualSites) keep ``train_local``'s own generator
instead, so that they agree with the fast engine batch for batch.
"""

from __future__ import annotations

import numpy as np

from medfl._seeds import derive_seed
from medfl.data._partition import Partition
from medfl.spec import Training

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, elementwise on uint64 (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def steps_for(sizes: np.ndarray, cfg: Training) -> np.ndarray:
    """``local_steps`` for every site at once (no BatchNorm pairing: none is stacked)."""
    if cfg.local_steps is not None:
        return np.full(len(sizes), cfg.local_steps, dtype=np.int64)
    steps = np.ceil(cfg.epochs_or_default * sizes / cfg.batch_size).astype(np.int64)
    return np.maximum(steps, 1)


def _padded_rows(cut: Partition, chosen: np.ndarray, width: int) -> np.ndarray:
    """``[sites, width]`` pool row numbers of each chosen site (repeats past its end)."""
    starts, sizes = cut.offsets[chosen], cut.sizes[chosen]
    at = np.minimum(np.arange(width)[None, :], sizes[:, None] - 1)
    return cut.rows[starts[:, None] + at].astype(np.int64)


def shuffled_batches(
    cut: Partition, chosen: np.ndarray, cfg: Training, seed: int, server_round: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool rows ``[sites, steps, batch]``, mask of real rows, each site's steps)."""
    sizes = cut.sizes[chosen].astype(np.int64)
    steps = steps_for(sizes, cfg)
    per_epoch = -(-sizes // cfg.batch_size)  # batches in one pass over a site's rows
    epochs = -(-steps // per_epoch)
    widest, most_epochs, most_steps = int(sizes.max()), int(epochs.max()), int(steps.max())
    key = np.uint64(derive_seed(seed, "batches", server_round))
    with np.errstate(over="ignore"):
        site = splitmix64(key ^ (chosen.astype(np.uint64) * _GOLDEN))
        epoch = splitmix64(site[:, None] + np.arange(most_epochs, dtype=np.uint64) * _M1)
        draw = splitmix64(epoch[:, :, None] + np.arange(widest, dtype=np.uint64) * _M2)
    past_end = np.arange(widest)[None, None, :] >= sizes[:, None, None]
    draw = np.where(past_end, np.uint64(np.iinfo(np.uint64).max), draw)
    order = np.argsort(draw, axis=2, kind="stable")  # each epoch's shuffle, padding last
    t = np.arange(most_steps)
    e, k = t[None, :] // per_epoch[:, None], t[None, :] % per_epoch[:, None]
    width = min(cfg.batch_size, widest)
    place = k[:, :, None] * cfg.batch_size + np.arange(width)[None, None, :]
    real = (place < sizes[:, None, None]) & (t[None, :, None] < steps[:, None, None])
    s = np.arange(len(chosen))[:, None, None]
    local = order[s, np.minimum(e, most_epochs - 1)[:, :, None], np.minimum(place, widest - 1)]
    rows = np.take_along_axis(
        _padded_rows(cut, chosen, widest), local.reshape(len(chosen), -1), axis=1
    ).reshape(local.shape)
    return np.where(real, rows, 0), real, steps
