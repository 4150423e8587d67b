"""medfl: federated learning for medical research.

from medfl import load_experiment, run
outcome = run(load_experiment("examples/heart-disease/experiment.yaml"))
"""

from medfl.runners import FastEngine, FlowerEngine, RunOutcome, run
from medfl.spec import Experiment, load_experiment

__version__ = "0.1.0"

__all__ = [
    "Experiment",
    "FastEngine",
    "FlowerEngine",
    "RunOutcome",
    "__version__",
    "load_experiment",
    "run",
]
