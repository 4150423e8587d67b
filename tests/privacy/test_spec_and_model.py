"""The privacy section's validation, and models DP-SGD cannot train."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medfl import RunOutcome
from medfl.errors import SpecError
from medfl.spec import parse_experiment
from tests.helpers import read_result
from tests.privacy.helpers import dp_spec

BATCH_MLP = {"type": "mlp", "hidden": [8, 4], "normalization": "batch"}


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"mode": "local", "delta": 1e-5}, "privacy: mode 'local' needs either 'targetEpsilon'"),
        ({"mode": "local", "targetEpsilon": 1}, "privacy: mode 'local' needs 'delta'"),
        ({"mode": "none", "targetEpsilon": 1}, "privacy: targetEpsilon: set but privacy.mode"),
        ({"mode": "local", "noiseMultiplier": -1, "delta": 1e-5}, "privacy.noiseMultiplier:"),
        ({"mode": "federated"}, "privacy.mode: Input should be 'none', 'local' or 'central'"),
        ({"mode": "local", "accountant": "moments"}, "privacy.accountant: Input should be"),
    ],
)
def test_privacy_mistakes_name_the_field(
    tmp_path: Path, privacy: dict[str, Any], message: str
) -> None:
    spec = dp_spec(tmp_path)
    spec["privacy"] = privacy
    with pytest.raises(SpecError) as err:
        parse_experiment(spec)
    assert message in str(err.value)


def test_defaults_are_rdp_and_poisson_sampling(tmp_path: Path) -> None:
    privacy = parse_experiment(dp_spec(tmp_path)).privacy
    assert (privacy.accountant, privacy.poisson_sampling, privacy.max_grad_norm) == ("rdp", True, 1)


def test_batch_norm_mlp_is_refused_when_validated_naming_its_layers(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        parse_experiment(dp_spec(tmp_path, model=BATCH_MLP))
    assert "DP-SGD cannot train the BatchNorm layer(s) norm1, norm2" in str(err.value)
    assert "privacy.repairModel: true" in str(err.value)


def test_custom_batch_norm_model_is_refused_before_training_naming_the_layer(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    model = {"type": "custom", "importPath": "tests.privacy.models:NormedNet"}
    with pytest.raises(SpecError) as err:
        run_fast(dp_spec(tmp_path, model=model))
    assert "DP-SGD cannot train layer(s) body.1 (BatchNorm1d)" in str(err.value)


def test_repair_model_replaces_batch_norm_everywhere_and_is_recorded(
    tmp_path: Path, run_fast: Callable[..., RunOutcome]
) -> None:
    spec = dp_spec(tmp_path, model=BATCH_MLP, privacy={"repairModel": True})
    result = read_result(run_fast(spec).run_dir)
    assert result["status"] == "succeeded"
    assert result["privacy"]["repairs"] == [
        "norm1: BatchNorm1d(8) -> GroupNorm(1, 8)",
        "norm2: BatchNorm1d(4) -> GroupNorm(1, 4)",
    ]
    names = [layer["name"] for layer in result["model"]["layers"]]
    assert "norm1.weight" in names and "norm1.running_mean" not in names  # server and sites
