"""Small DP experiments and site policy files for the privacy tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers import make_sites

# Few rows and steps: each run trains in well under a second.
SIZES = (200, 160, 140)


def dp_spec(
    tmp_path: Path, privacy: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Three sites, 4 rounds, DP-SGD with a fixed noise multiplier unless told otherwise."""
    training = {"rounds": 4, "batchSize": 16, "learningRate": 0.1, "seed": 3}
    return make_sites(
        tmp_path,
        SIZES,
        privacy={"mode": "local", "noiseMultiplier": 3.0, "delta": 1e-5, **(privacy or {})},
        training={**training, **overrides.pop("training", {})},
        **overrides,
    )


def write_policy(path: Path, privacy: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"privacy": privacy}))
    return path
