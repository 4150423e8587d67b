"""Per-site stratified train / validation / test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfl._seeds import derive_seed
from medfl.spec import Split


@dataclass(frozen=True)
class SplitIndex:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def stratified_split(y: np.ndarray, split: Split, seed: int, site: str) -> SplitIndex:
    """Each outcome class is shuffled and cut in the same proportions; row order is kept."""
    rng = np.random.default_rng(derive_seed(seed, site, "split"))
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(idx) * split.test)
        n_val = round(len(idx) * split.validation)
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    joined = {k: np.sort(np.concatenate(v)) if v else np.array([], int) for k, v in parts.items()}
    return SplitIndex(**joined)


def predefined_split(labels: np.ndarray) -> SplitIndex:
    """The split a site's own split column gives."""
    return SplitIndex(*(np.flatnonzero(labels == part) for part in ("train", "validation", "test")))
