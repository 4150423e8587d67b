"""Federated preprocessing: sites send sums, counts and level names; never rows.

``summarize`` runs at a site on its training split; ``Preprocessor.from_summaries``
runs at the server; ``Preprocessor.transform`` runs at each site (and in
``medfl predict``) to turn a table into the model's input matrix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medfl.data._prepare import MISSING_LEVEL
from medfl.spec import Schema
from medfl.spec._models import CategoricalMissing

_NO_LEVEL = "\x00"  # never a level's name (levels are cell text)


@dataclass
class SiteSummary:
    """Aggregates a site shares: per numeric column count/sum/sum of squares, per
    categorical column the count of each level (missing counted as MISSING_LEVEL)."""

    site: str
    n: int
    numeric: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    levels: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"site": self.site, "n": self.n, "numeric": self.numeric, "levels": self.levels}
        )

    @classmethod
    def from_json(cls, text: str) -> SiteSummary:
        d = json.loads(text)
        numeric = {k: (int(v[0]), float(v[1]), float(v[2])) for k, v in d["numeric"].items()}
        return cls(d["site"], int(d["n"]), numeric, d["levels"])


def summarize(
    site: str, train: pd.DataFrame, everything: pd.DataFrame, schema: Schema
) -> SiteSummary:
    """Statistics from the training rows; level names from all rows (so no split meets
    a level the vocabulary lacks). Levels absent from training are counted 0."""
    summary = SiteSummary(site=site, n=len(train))
    for column in schema.numeric:
        values = train[column].dropna().to_numpy(dtype=np.float64)
        summary.numeric[column] = (len(values), float(values.sum()), float((values**2).sum()))
    for column in schema.categorical:
        counts = train[column].fillna(MISSING_LEVEL).value_counts()
        names = set(everything[column].fillna(MISSING_LEVEL))
        summary.levels[column] = {str(k): int(counts.get(k, 0)) for k in sorted(names)}
    return summary


@dataclass
class Preprocessor:
    """Imputation, standardisation and one-hot encoding shared by the whole federation."""

    numeric: list[str]
    categorical: list[str]
    means: dict[str, float]
    stds: dict[str, float]
    vocabulary: dict[str, list[str]]
    fill_levels: dict[str, str | None]
    standardize: bool = True

    @classmethod
    def from_summaries(cls, schema: Schema, summaries: list[SiteSummary]) -> Preprocessor:
        means, stds = {}, {}
        for column in schema.numeric:
            n = sum(s.numeric[column][0] for s in summaries)
            total = sum(s.numeric[column][1] for s in summaries)
            squares = sum(s.numeric[column][2] for s in summaries)
            mean = total / n if n else 0.0
            var = max(squares / n - mean**2, 0.0) if n else 0.0
            means[column] = mean
            stds[column] = math.sqrt(var) if var > 0 else 1.0
        vocabulary, fill = {}, {}
        for column in schema.categorical:
            counts: dict[str, int] = {}
            for s in summaries:
                for level, count in s.levels[column].items():
                    counts[level] = counts.get(level, 0) + count
            vocabulary[column], fill[column] = _vocabulary(schema, column, counts)
        return cls(
            schema.numeric, schema.categorical, means, stds, vocabulary, fill, schema.standardize
        )

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for column in self.categorical:
            names += [f"{column}={level}" for level in self.vocabulary[column]]
        return names

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input matrix (float32), columns taken by name."""
        blocks = []
        for column in self.numeric:
            values = frame[column].astype(float).fillna(self.means[column]).to_numpy()
            if self.standardize:
                values = (values - self.means[column]) / self.stds[column]
            blocks.append(values[:, None])
        for column in self.categorical:
            vocab = self.vocabulary[column]
            levels = frame[column].astype(object)
            fill = self.fill_levels[column]
            # a missing value with no fill level matches no column: all zeros
            filled = levels.where(levels.notna(), _NO_LEVEL if fill is None else fill).astype(str)
            onehot = filled.to_numpy()[:, None] == np.array(vocab, dtype=object)[None, :]
            blocks.append(onehot.astype(np.float64))
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "means": self.means,
            "stds": self.stds,
            "vocabulary": self.vocabulary,
            "fillLevels": self.fill_levels,
            "standardize": self.standardize,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        return cls(
            d["numeric"],
            d["categorical"],
            d["means"],
            d["stds"],
            d["vocabulary"],
            d["fillLevels"],
            d.get("standardize", True),
        )


def _vocabulary(
    schema: Schema, column: str, counts: dict[str, int]
) -> tuple[list[str], str | None]:
    """The column's levels in a fixed order and the level a missing value becomes."""
    seen_missing = MISSING_LEVEL in counts
    observed = {k: v for k, v in counts.items() if k != MISSING_LEVEL}
    declared = schema.levels.get(column)
    vocab = list(declared) if declared is not None else sorted(observed)
    vocab += sorted(k for k in observed if k not in vocab)  # only OTHER_LEVEL can remain here
    policy = schema.missing.categorical
    if policy is CategoricalMissing.mode and observed:
        return vocab, max(sorted(observed), key=lambda k: observed[k])
    if policy is CategoricalMissing.level and seen_missing:
        return [*vocab, MISSING_LEVEL], MISSING_LEVEL
    return vocab, None
