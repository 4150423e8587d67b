"""Finding and killing the deployment's processes by their command lines (Linux /proc)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

DEPLOYMENT_COMMANDS = (
    "flower-superlink",
    "flower-supernode",
    "flower-superexec",
    "flwr-serverapp",
    "flwr-clientapp",
    "medfl.fl.supernode",
    "medfl.fl.site_executor",
)


def _processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def deployment_processes() -> list[str]:
    """Every live process of a deployment (server, sites, their apps)."""
    return [
        f"{pid}: {cmd[:120]}"
        for pid, cmd in _processes()
        if any(name in cmd for name in DEPLOYMENT_COMMANDS)
    ]


def kill_site(site: str) -> None:
    """SIGKILL the site's SuperNode, as a crash or an OOM kill would."""
    for pid, cmdline in _processes():
        if "medfl.fl.supernode" in cmdline and f'site="{site}"' in cmdline:
            os.kill(pid, signal.SIGKILL)
            return
    raise AssertionError(f"no SuperNode for {site}")
