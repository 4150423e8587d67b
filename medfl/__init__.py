"""medfl: federated learning for medical research.

from medfl import load_experiment, run
outcome = run(load_experiment("examples/heart-disease/experiment.yaml"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Loaded on first use, so `import medfl.spec` (the operator, the API) never pulls in torch.
_LAZY = {
    "Experiment": "medfl.spec",
    "load_experiment": "medfl.spec",
    "run": "medfl.runners",
    "FastEngine": "medfl.runners",
    "FlowerEngine": "medfl.runners",
    "RunOutcome": "medfl.runners",
}

if TYPE_CHECKING:
    from medfl.runners import FastEngine, FlowerEngine, RunOutcome, run
    from medfl.spec import Experiment, load_experiment

__all__ = [
    "Experiment",
    "FastEngine",
    "FlowerEngine",
    "RunOutcome",
    "__version__",
    "load_experiment",
    "run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medfl' has no attribute {name!r}")
