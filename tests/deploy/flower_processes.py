"""Finding and killing the deployment's processes by their command lines (Linux /proc).

Only this test session's: every process the tests start inherits MARKER in its
environment (an orphan too), so a medfl server someone runs beside the tests is
never counted or killed.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

MARKER = "MEDFL_TEST_SESSION"
os.environ.setdefault(MARKER, uuid.uuid4().hex)
_TAG = f"{MARKER}={os.environ[MARKER]}".encode()

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
            ours = _TAG in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if state != "Z" and ours:
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
