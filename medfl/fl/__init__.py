"""Flower glue: medfl's federation on Flower's ServerApp/ClientApp (Message API).

``run_flower_simulation`` runs an experiment on Flower's simulation engine (Ray);
``make_server_app`` / ``make_client_app`` are the apps themselves, and
``GridTransport`` carries the framework-free federation loop over a Flower Grid.
"""

import os

# Flower reads this once, when first imported: set before any flwr import below.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

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
