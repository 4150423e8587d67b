"""Where a local deployment keeps its processes' logs, and how its supervisor tells
the ServerApp which sites died (a file in the run directory that the ServerApp polls:
both run on the server's machine)."""

from __future__ import annotations

import json
from pathlib import Path

DEPLOYMENT_DIR = "deployment"  # in the run directory
LOST_SITES_FILE = "lost-sites.json"  # site -> why its process ended
STOP_FILE = "stop-requested"  # a search stopped this trial: end after the current round


def write_lost_sites(run_dir: Path, reasons: dict[str, str]) -> None:
    """Replace the file at once (write, then rename): the ServerApp never reads half."""
    path = run_dir / DEPLOYMENT_DIR / LOST_SITES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(reasons))
    tmp.replace(path)


def lost_sites(run_dir: Path) -> dict[str, str]:
    """Sites the local supervisor saw die (site -> reason); none when no file."""
    path = run_dir / DEPLOYMENT_DIR / LOST_SITES_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def request_stop(run_dir: Path, reason: str) -> None:
    """Ask the run's ServerApp to end after its current round. Gentler than ``flwr
    stop``, which ends the run mid-message and leaves sites retrying their pulls."""
    (run_dir / DEPLOYMENT_DIR).mkdir(parents=True, exist_ok=True)
    (run_dir / DEPLOYMENT_DIR / STOP_FILE).write_text(reason)


def stop_requested(run_dir: Path) -> str | None:
    """Why the run was asked to stop; None when it was not."""
    try:
        return (run_dir / DEPLOYMENT_DIR / STOP_FILE).read_text() or "asked to stop"
    except OSError:
        return None
