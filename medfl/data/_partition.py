"""Partitioners: a pool of training rows cut into many virtual sites.

A partition is held compactly: one int32 array of pool row numbers, site after site,
and int64 offsets (site ``i`` owns ``rows[offsets[i]:offsets[i + 1]]``), not an array
or tensor per site. Everything is drawn from one generator seeded by the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medfl._seeds import derive_seed
from medfl.errors import SpecError
from medfl.spec._simulation import (
    ColumnPartition,
    DirichletPartition,
    IidPartition,
    Partitioner,
    QuantityPartition,
    ShardPartition,
)

FIELD = "simulation.virtualSites"
DIRICHLET_DRAWS = 10  # redraws before sites under minSize are filled from the largest


@dataclass
class Partition:
    """Virtual sites as slices of one row array; ``names`` only for the column partitioner
    (one site per level), otherwise site ``i`` is ``site_name(i)``."""

    rows: np.ndarray  # int32 pool row numbers, site by site
    offsets: np.ndarray  # int64, length sites + 1
    names: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def site_rows(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i] : self.offsets[i + 1]]

    def site_name(self, i: int) -> str:
        if self.names is not None:
            return self.names[i]
        return f"v{i:0{len(str(self.count - 1))}d}"

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.offsets.nbytes)


def _from_lists(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
    return rows, offsets


def _too_few_rows(rows: int, count: int, least: int, what: str) -> SpecError:
    return SpecError(
        [
            (
                f"{FIELD}.count",
                f"{count} sites with at least {least} row(s) each need {count * least} rows; "
                f"the pool has {rows} training rows ({what}; partitioner 'shards' draws with "
                "replacement and allows any count)",
            )
        ]
    )


def iid(n: int, count: int, rng: np.random.Generator) -> Partition:
    if count > n:
        raise _too_few_rows(n, count, 1, "iid gives every site a row")
    rows, offsets = _from_lists(np.array_split(rng.permutation(n), count))
    return Partition(rows, offsets)


def _sizes(total: int, shares: np.ndarray, least: int) -> np.ndarray:
    """Integer sizes summing to ``total``: ``least`` each, the rest by ``shares`` (largest
    remainders), so no rounding leaves rows out or counts them twice."""
    spare = total - least * len(shares)
    exact = shares * spare
    sizes = np.floor(exact).astype(np.int64)
    short = spare - int(sizes.sum())
    sizes[np.argsort(-(exact - sizes), kind="stable")[:short]] += 1
    return sizes + least


def quantity(n: int, spec: QuantityPartition, count: int, rng: np.random.Generator) -> Partition:
    if count * spec.min_size > n:
        raise _too_few_rows(n, count, spec.min_size, "quantity keeps rows unique")
    sizes = _sizes(n, rng.dirichlet(np.full(count, spec.alpha)), spec.min_size)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return Partition(rng.permutation(n).astype(np.int32), offsets)


def _dirichlet_draw(y: np.ndarray, count: int, alpha: float, rng: np.random.Generator) -> list:
    """Each class's rows cut in Dirichlet proportions: a class with fewer rows than sites
    leaves some sites without it, and never divides by zero (no NaN)."""
    sites: list[list[np.ndarray]] = [[] for _ in range(count)]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        cuts = _sizes(len(idx), rng.dirichlet(np.full(count, alpha)), 0)
        for site, part in enumerate(np.split(idx, np.cumsum(cuts)[:-1])):
            sites[site].append(part)
    return [np.concatenate(p) for p in sites]


def _fill_small(
    parts: list[np.ndarray], least: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], int, int]:
    """Sites under ``least`` take random rows from the currently largest site; it ends,
    since the pool holds at least ``least`` rows per site (checked before the draw)."""
    sizes = np.array([len(p) for p in parts])
    small = np.flatnonzero(sizes < least)
    moved = 0
    for site in small:
        while sizes[site] < least:
            donor = int(np.argmax(sizes))
            take = min(least - sizes[site], sizes[donor] - least)
            chosen = rng.choice(sizes[donor], size=take, replace=False)
            parts[site] = np.concatenate([parts[site], parts[donor][chosen]])
            parts[donor] = np.delete(parts[donor], chosen)
            sizes[site] += take
            sizes[donor] -= take
            moved += take
    return parts, len(small), moved


def dirichlet(
    y: np.ndarray, spec: DirichletPartition, count: int, rng: np.random.Generator
) -> Partition:
    n = len(y)
    if count * spec.min_size > n:
        raise _too_few_rows(n, count, spec.min_size, "dirichlet keeps rows unique")
    notes, draws = [], 0
    while True:
        parts = _dirichlet_draw(y, count, spec.alpha, rng)
        draws += 1
        if min(len(p) for p in parts) >= spec.min_size:
            if draws > 1:
                notes.append(f"dirichlet: draw {draws} was the first with every site at minSize")
            break
        if draws == DIRICHLET_DRAWS:
            parts, small, moved = _fill_small(parts, spec.min_size, rng)
            notes.append(
                f"dirichlet: after {DIRICHLET_DRAWS} draws {small} site(s) still had fewer "
                f"than minSize {spec.min_size} rows; {moved} row(s) moved to them from the "
                "largest sites (their label mix is then less skewed than drawn)"
            )
            break
    rows, offsets = _from_lists(parts)
    return Partition(rows, offsets, notes=notes)


def by_column(values: np.ndarray) -> Partition:
    """One site per level (sorted), the levels' spelling as the site's name."""
    levels = sorted(set(values.tolist()))
    parts = [np.flatnonzero(values == level) for level in levels]
    rows, offsets = _from_lists(parts)
    return Partition(rows, offsets, names=[str(v) for v in levels])


def shards(n: int, spec: ShardPartition, count: int, rng: np.random.Generator) -> Partition:
    if n == 0:
        raise _too_few_rows(0, count, 1, "shards draw from the pool")
    rows = rng.integers(0, n, size=count * spec.shard_size, dtype=np.int32)
    offsets = np.arange(count + 1, dtype=np.int64) * spec.shard_size
    return Partition(rows, offsets)


def partition(
    spec: Partitioner,
    y: np.ndarray,
    count: int | None,
    seed: int,
    column: np.ndarray | None = None,
) -> Partition:
    """Cut ``len(y)`` pool rows into virtual sites; ``column`` holds each row's level for
    the column partitioner. Raises SpecError naming the field when it cannot be done."""
    rng = np.random.default_rng(derive_seed(seed, "partition"))
    if isinstance(spec, ColumnPartition):
        assert column is not None, "the column partitioner needs each row's level"
        return by_column(column)
    assert count is not None
    if isinstance(spec, IidPartition):
        return iid(len(y), count, rng)
    if isinstance(spec, DirichletPartition):
        return dirichlet(y, spec, count, rng)
    if isinstance(spec, QuantityPartition):
        return quantity(len(y), spec, count, rng)
    return shards(len(y), spec, count, rng)


def label_mix(part: Partition, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per site: rows and positives (vectorised, for a million sites as for four)."""
    site_of_row = np.repeat(np.arange(part.count), part.sizes)
    positives = np.bincount(site_of_row, weights=y[part.rows], minlength=part.count)
    return part.sizes, positives.astype(np.int64)
