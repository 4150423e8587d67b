"""Small synthetic sites for the tests: data frames, files, and spec dicts around them."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SITE_NAMES = ("site-a", "site-b", "site-c")
NUMERIC = ["age", "bp"]
CATEGORICAL = ["sex", "smoker"]
TARGET = "outcome"


def site_frame(n: int, seed: int) -> pd.DataFrame:
    """``n`` synthetic patients; the outcome depends on age, sex and smoking."""
    rng = np.random.default_rng(seed)
    age = rng.normal(55, 10, n).round().astype(int)
    bp = rng.normal(130, 15, n).round(1)
    sex = rng.choice(["female", "male"], n)
    smoker = rng.choice(["no", "yes"], n, p=[0.6, 0.4])
    logit = 0.08 * (age - 55) + 0.9 * (sex == "male") + 0.7 * (smoker == "yes") - 0.5
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"age": age, "bp": bp, "sex": sex, "smoker": smoker, "outcome": outcome})


def make_frames(sizes: tuple[int, ...] = (200, 150, 100), seed: int = 0) -> dict[str, pd.DataFrame]:
    return {
        name: site_frame(n, seed + i)
        for i, (name, n) in enumerate(zip(SITE_NAMES, sizes, strict=False))
    }


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    """CSV or Parquet by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_dict(sites: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A bare experiment spec around ``sites``; ``overrides`` merge into it by key."""
    spec = {
        "name": "toy",
        "sites": sites,
        "schema": {
            "target": {"column": TARGET},
            "numeric": list(NUMERIC),
            "categorical": list(CATEGORICAL),
        },
        "model": {"type": "logistic"},
        "training": {
            "rounds": 3,
            "localEpochs": 1,
            "batchSize": 16,
            "learningRate": 0.1,
            "seed": 7,
        },
        "evaluation": {"split": {"validation": 0.2, "test": 0.2}, "baselines": []},
    }
    return deep_merge(spec, overrides)


def make_sites(
    tmp_path: Path,
    sizes: tuple[int, ...] = (200, 150, 100),
    *,
    frames: dict[str, pd.DataFrame] | None = None,
    suffix: str = ".csv",
    **overrides: Any,
) -> dict[str, Any]:
    """Write one file per site under ``tmp_path/data`` and return a spec dict using them."""
    frames = frames if frames is not None else make_frames(sizes)
    source = "parquet" if suffix == ".parquet" else "csv"
    sites = []
    for name, frame in frames.items():
        path = write_table(tmp_path / "data" / f"{name}{suffix}", frame)
        sites.append({"name": name, "data": {"source": source, "path": str(path)}})
    return spec_dict(sites, **overrides)


def site_entry(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in spec["sites"] if s["name"] == name)


def read_result(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "result.json").read_text())


def model_arrays(run_dir: Path) -> list[np.ndarray]:
    with np.load(Path(run_dir) / "model.npz") as data:
        return [data[f"p{i}"] for i in range(len(data.files))]


def assert_same_arrays(left: list[np.ndarray], right: list[np.ndarray]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), f"arrays differ by up to {np.abs(a - b).max()}"


HOSPITALS = ("Cleveland", "Hungary", "Switzerland", "VA Long Beach")


def heart_spec(numeric: list[str], categorical: list[str], **extra: Any) -> dict[str, Any]:
    """The four UCI Heart Disease hospitals (built-in data), outcome num > 0."""
    return {
        "name": "heart",
        "sites": [
            {"name": h.lower().replace(" ", "-"), "data": {"source": "demo", "hospital": h}}
            for h in HOSPITALS
        ],
        "schema": {
            "target": {"column": "num", "positiveAbove": 0},
            "numeric": numeric,
            "categorical": categorical,
        },
        **extra,
    }


def interrupt_after(round_: int) -> Callable[[Any], None]:
    """A progress hook that stops the run after ``round_`` as Ctrl-C would."""

    def progress(record: Any) -> None:
        if record.round == round_:
            raise KeyboardInterrupt

    return progress


def cut_before_round_2_checkpoint(
    run_fast: Callable[..., Any], spec: dict[str, Any], out: Path
) -> None:
    """Run ``spec`` into ``out`` and kill it after result.json recorded round 2 but
    before round 2's checkpoint landed (the checkpoint on disk is round 1's)."""
    import shutil

    import pytest

    saved = out.parent / f"{out.name}-checkpoint-round-1.npz"

    stop = interrupt_after(2)

    def progress(record: Any) -> None:
        if record.round == 1:
            shutil.copy(out / "checkpoint.npz", saved)
        stop(record)

    with pytest.raises(KeyboardInterrupt):
        run_fast(spec, out=out.name, progress=progress)
    shutil.copy(saved, out / "checkpoint.npz")
