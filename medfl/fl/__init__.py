"""Flower glue: medfl's federation on Flower's ServerApp/ClientApp (Message API).

``run_flower_simulation`` runs an experiment on Flower's simulation engine (Ray);
``make_server_app`` / ``make_client_app`` are the apps themselves, and
``GridTransport`` carries the framework-free federation loop over a Flower Grid.
Loaded on first use: a site's SuperNode (``medfl.fl.supernode``) never imports torch.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Flower reads this once, when first imported: set before any flwr import.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

_LAZY = {
    "make_client_app": "medfl.fl._client_app",
    "ServerSession": "medfl.fl._server_app",
    "make_server_app": "medfl.fl._server_app",
    "run_flower_simulation": "medfl.fl._simulation",
    "GridTransport": "medfl.fl._transport",
    "StopSignal": "medfl.fl._transport",
    "Timeouts": "medfl.fl._transport",
}

if TYPE_CHECKING:
    from medfl.fl._client_app import make_client_app
    from medfl.fl._server_app import ServerSession, make_server_app
    from medfl.fl._simulation import run_flower_simulation
    from medfl.fl._transport import GridTransport, StopSignal, Timeouts

__all__ = [
    "GridTransport",
    "ServerSession",
    "StopSignal",
    "Timeouts",
    "make_client_app",
    "make_server_app",
    "run_flower_simulation",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medfl.fl' has no attribute {name!r}")
