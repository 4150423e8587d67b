"""Starting, watching and stopping the deployment's processes, leaving none behind.

Flower's SuperLink and SuperNode start children of their own (SuperExec, the
ServerApp and a ClientApp per message), some in new sessions: stopping a role
therefore stops its whole process tree, found through /proc, not just its group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medfl.deploy._exits import describe_exit
from medfl.errors import TrainingError

if TYPE_CHECKING:
    from medfl.deploy._flower import SiteCommand

_GRACE_SECONDS = 3.0  # SIGTERM first; whatever still runs after this gets SIGKILL
_EXIT_CODE = re.compile(r"Exit Code: (\d+)")  # how Flower logs why it exits
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def flower_env(home: Path | None = None) -> dict[str, str]:
    """The environment Flower's commands need: this interpreter's scripts first on PATH
    (SuperLink and SuperNode start ``flower-superexec`` by name), no telemetry, and
    a Flower home of the run's own (connections, installed app bundles)."""
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    # SuperExec looks for new tasks once a second by default: a round costs two
    # exchanges per site, so that second would dominate small models' rounds.
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.05")
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["FLWR_HOME"] = str(home)
    return env


def flower_command(name: str) -> str:
    """A Flower script installed beside this interpreter, by absolute path."""
    return str(Path(sys.executable).parent / name)


@dataclass
class Role:
    """One process the supervisor started: the server or a site."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    site: str | None = None  # the site this process serves; None: the server
    reported: bool = False

    @property
    def exit_code(self) -> int | None:
        """Flower's own exit code where its log states one (the process itself then
        exits with 1), else the process's."""
        code = self.process.poll()
        if code is None:
            return None
        stated = [m for line in self.last_lines(200) for m in _EXIT_CODE.findall(line)]
        return int(stated[-1]) if stated else code

    def last_lines(self, count: int = 8) -> list[str]:
        """The log's last lines (Flower's messages, never data values), from its last
        error on when there is one: that is why a process ended."""
        try:
            with self.log.open(errors="replace") as handle:
                tail = deque((_ANSI.sub("", line).rstrip() for line in handle), maxlen=200)
        except OSError:
            return []
        lines = [line for line in tail if line.strip()]
        errors = [i for i, line in enumerate(lines) if "ERROR" in line]
        start = errors[-1] if errors else max(len(lines) - count, 0)
        return lines[start : start + count]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant still alive (Linux /proc)."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone but for its parent


@dataclass
class Supervisor:
    """The processes of one deployment; ``stop_all`` ends every one of them."""

    log_dir: Path
    env: dict[str, str]
    roles: dict[str, Role] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], site: str | None = None) -> Role:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # Ctrl-C reaches medfl, which then stops these
            )
        role = Role(name, process, log, site)
        self.roles[name] = role
        return role

    def start_site(self, command: SiteCommand) -> Role:
        """A site: its SuperNode, and medfl's executor that runs its ClientApp tasks
        (logged to SITE.apps.log). Either ending means the site is gone."""
        name = f"site-{command.site}"
        node = self.start(name, command.argv(), command.site)
        if command.warm:
            self.start(f"{name}.apps", command.executor_argv(node.process.pid), command.site)
        return node

    def newly_exited(self) -> list[Role]:
        """Roles whose process ended since the last call."""
        ended = [r for r in self.roles.values() if not r.reported and r.exit_code is not None]
        for role in ended:
            role.reported = True
        return ended

    def stop(self, name: str) -> None:
        role = self.roles.get(name)
        if role is not None:
            _stop_trees([role.process.pid])
            role.process.wait()

    def stop_all(self) -> None:
        _stop_trees([r.process.pid for r in self.roles.values()])
        for role in self.roles.values():
            try:
                role.process.wait(timeout=_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                role.process.kill()
                role.process.wait()


def _stop_trees(roots: list[int]) -> None:
    """SIGTERM every process of the trees, then SIGKILL what is left. The trees are
    read before the first signal: a child re-parented to init is still found."""
    pids = [pid for root in roots for pid in process_tree(root)]
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    _signal_all([p for p in pids if _alive(p)], signal.SIGKILL)


def free_port() -> int:
    """A loopback port free now (another process may still take it before we do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, server: Role, timeout: float) -> None:
    """Until the server listens on 127.0.0.1:port; its exit or the timeout raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.exit_code is not None:
            raise TrainingError(f"the server (SuperLink) {ended(server)}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TrainingError(f"the server (SuperLink) did not listen on port {port} in {timeout:g} s")


def ended(role: Role) -> str:
    """How a process ended, and its last log lines (Flower's messages, never data)."""
    last = role.last_lines()
    tail = "\n    ".join(last)
    code = role.exit_code
    return f"exited with code {code} ({describe_exit(code, last)})" + (
        f"; its last log lines:\n    {tail}" if tail else ""
    )
