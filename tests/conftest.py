"""Shared fixtures: small synthetic sites on disk and a one-call fast-engine run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medfl import RunOutcome, run
from medfl.spec import Experiment, parse_experiment
from tests.helpers import make_sites


@pytest.fixture
def toy_spec(tmp_path: Path) -> dict[str, Any]:
    """Three CSV sites (80, 60 and 40 patients), 3 rounds of logistic regression."""
    return make_sites(tmp_path)


@pytest.fixture
def run_fast(tmp_path: Path) -> Callable[..., RunOutcome]:
    """Run a spec dict (or Experiment) with the fast engine into tmp_path/<out>."""

    def _run(spec: dict[str, Any] | Experiment, out: str = "run", **kwargs: Any) -> RunOutcome:
        experiment = spec if isinstance(spec, Experiment) else parse_experiment(spec)
        kwargs.setdefault("baselines", False)
        return run(experiment, out=tmp_path / out, **kwargs)

    return _run
