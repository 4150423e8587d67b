"""Where a local deployment keeps its processes' logs, and how its supervisor tells
the ServerApp which sites died (a file in the run directory that the ServerApp polls:
both run on the server's machine)."""

from __future__ import annotations

import json
from pathlib import Path

DEPLOYMENT_DIR = "deployment"  # in the run directory
LOST_SITES_FILE = "lost-sites.json"  # site -> why its process ended
STOP_FILE = "stop-requested"  # a search stopped this trial: end after the current round
GO_ON_FILE = "go-on-after"  # the search read this trial's score up to this round


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


def allow_rounds_after(run_dir: Path, round_: int) -> None:
    """The search has taken a trial's score for ``round_`` and did not stop it: its
    ServerApp, waiting after that round, may go on."""
    (run_dir / DEPLOYMENT_DIR).mkdir(parents=True, exist_ok=True)
    path = run_dir / DEPLOYMENT_DIR / GO_ON_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(round_))
    tmp.replace(path)


def allowed_after(run_dir: Path) -> int:
    """The last round the search let the trial go on after; 0 before any."""
    try:
        return int((run_dir / DEPLOYMENT_DIR / GO_ON_FILE).read_text())
    except (OSError, ValueError):
        return 0
