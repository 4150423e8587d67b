"""Framework-free training: local train/evaluate, aggregation, and the federation loop."""

from medfl.errors import EmptySiteError
from medfl.training._aggregate import ServerOptimizer, weighted_average
from medfl.training._federation import Checkpoint, Federation, Setup, SiteFailure, Transport
from medfl.training._inprocess import InProcessTransport
from medfl.training._local import (
    LocalData,
    LocalUpdate,
    Params,
    evaluate,
    get_params,
    set_params,
    train_local,
)
from medfl.training._metrics import METRICS, Metrics, binary_metrics, roc_auc, weighted
from medfl.training._site import SiteHello, SiteWorker

__all__ = [
    "METRICS",
    "Checkpoint",
    "EmptySiteError",
    "Federation",
    "InProcessTransport",
    "LocalData",
    "LocalUpdate",
    "Metrics",
    "Params",
    "ServerOptimizer",
    "Setup",
    "SiteFailure",
    "SiteHello",
    "SiteWorker",
    "Transport",
    "binary_metrics",
    "evaluate",
    "get_params",
    "roc_auc",
    "set_params",
    "train_local",
    "weighted",
    "weighted_average",
]
