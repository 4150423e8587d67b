"""Where a local deployment keeps its processes' logs, and how its supervisor tells
the ServerApp which sites died (a file in the run directory that the ServerApp polls:
both run on the server's machine)."""

from __future__ import annotations

import json
from pathlib import Path

DEPLOYMENT_DIR = "deployment"  # in the run directory
LOST_SITES_FILE = "lost-sites.json"  # site -> why its process ended


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
