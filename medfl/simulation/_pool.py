"""The pool of virtual sites: the source sites' training rows as one tensor, preprocessed
once with the federation's own encoding, and the partition as index arrays into it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medfl.data._partition import Partition, label_mix, partition
from medfl.errors import UsageError
from medfl.results._model import PartitionReport
from medfl.spec import Experiment
from medfl.spec._simulation import SITE_COLUMN, ColumnPartition, Partitioner
from medfl.training import SiteWorker


@dataclass
class Pool:
    x: torch.Tensor  # [rows, features] on the engine's device
    y: torch.Tensor  # [rows]
    partition: Partition
    report: PartitionReport | None  # None: the experiment's own sites

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size() + self.y.numel() * self.y.element_size()


def choose_device(wanted: str) -> torch.device:
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise UsageError("simulation.device is 'cuda' but torch sees no CUDA device here")
    return torch.device(wanted)


def _column(workers: dict[str, SiteWorker], spec: ColumnPartition) -> np.ndarray:
    if spec.column == SITE_COLUMN:
        sizes = [len(w.split_data("train")) for w in workers.values()]
        return np.repeat(np.array(list(workers), dtype=object), sizes)
    frames = [w.split_tables()["train"][0][spec.column] for w in workers.values()]
    return np.concatenate([f.fillna("__missing__").astype(str).to_numpy() for f in frames])


def build_pool(
    experiment: Experiment, workers: dict[str, SiteWorker], device: torch.device
) -> Pool:
    """Every active site's training rows, in the sites' order; the spec's partition of
    them, or (without virtualSites) each source site as one site."""
    parts = [w.split_data("train") for w in workers.values()]
    x = torch.cat([p.x for p in parts]).to(device)
    y = torch.cat([p.y for p in parts]).to(device)
    labels = y.cpu().numpy()
    assert experiment.simulation is not None
    virtual = experiment.simulation.virtual_sites
    if virtual is None:
        names = list(workers)
        rows = np.arange(len(labels), dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        return Pool(x, y, Partition(rows, offsets, names=names), None)
    seed = experiment.training.seed if virtual.seed is None else virtual.seed
    spec = virtual.partitioner
    column = _column(workers, spec) if isinstance(spec, ColumnPartition) else None
    cut = partition(spec, labels, virtual.count, seed, column)
    return Pool(x, y, cut, _report(cut, labels, virtual.partitioner, seed))


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def _report(cut: Partition, y: np.ndarray, spec: Partitioner, seed: int) -> PartitionReport:
    sizes, positives = label_mix(cut, y)
    share = positives / np.maximum(sizes, 1)
    single = int(((positives == 0) | (positives == sizes)).sum())
    settings = spec.model_dump(by_alias=True, exclude={"type"})
    return PartitionReport(
        type=spec.type,
        settings=settings,
        seed=seed,
        pool_rows=len(y),
        sites=cut.count,
        rows=int(sizes.sum()),
        size=_spread(sizes),
        positive_share=_spread(share),
        single_class_sites=single,
        notes=list(cut.notes),
    )


def partition_csv(pool: Pool) -> str:
    """site, rows, positives: every virtual site, one line each."""
    sizes, positives = label_mix(pool.partition, pool.y.cpu().numpy())
    lines = ["site,rows,positives"]
    lines += [
        f"{pool.partition.site_name(i)},{n},{p}"
        for i, (n, p) in enumerate(zip(sizes.tolist(), positives.tolist(), strict=True))
    ]
    return "\n".join(lines) + "\n"
