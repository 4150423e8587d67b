"""Flower's own commands for a deployment: the SuperLink and SuperNode command lines,
and the ``flwr`` CLI (register a site's key, submit a run, read its status, stop it)
against one SuperLink connection written to a Flower home of medfl's own."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medfl.deploy._processes import flower_command, flower_env
from medfl.deploy._tls import ServerTls
from medfl.errors import TrainingError

CONNECTION = "medfl"
_CLI_TIMEOUT = 120.0


def app_dir() -> Path:
    """The Flower App medfl submits: a pyproject naming medfl's ServerApp and ClientApp."""
    return Path(str(resources.files("medfl.fl") / "app"))


@dataclass(frozen=True)
class ServerCommand:
    host: str
    port: int
    tls: ServerTls | None  # None: --insecure
    authenticate_sites: bool
    database: Path | None = None

    def argv(self) -> list[str]:
        argv = [flower_command("flower-superlink"), "--host", self.host, "--port", str(self.port)]
        argv.append("--disable-runtime-dependency-installation")  # medfl is installed already
        if self.tls is None:
            argv.append("--insecure")
        else:
            tls = [str(p.resolve()) for p in (self.tls.ca, self.tls.cert, self.tls.key)]
            argv += ["--ssl-ca-certfile", tls[0], "--ssl-certfile", tls[1], "--ssl-keyfile", tls[2]]
        if self.authenticate_sites:
            argv.append("--enable-supernode-auth")
        if self.database is not None:
            argv += ["--database", str(self.database)]
        return argv


@dataclass(frozen=True)
class SiteCommand:
    site: str
    server: str  # host:port
    port: int  # the SuperNode's own local API
    ca: Path | None  # None: --insecure
    key: Path | None = None  # the site's private key, when the server authenticates sites
    data: Path | None = None  # the site's own file, instead of the spec's source
    policy: Path | None = None  # the site's own policy file (disclosure limits)
    max_wait_s: float | None = None  # give up connecting after this long
    # True: medfl's SuperNode wrapper and its warm executor (medfl.fl.site_executor);
    # False: Flower's stock SuperNode, a new ClientApp process per message (slow)
    warm: bool = True

    def argv(self) -> list[str]:
        config = f'site="{self.site}"'
        if self.data is not None:
            config += f' data="{self.data.resolve()}"'
        if self.policy is not None:
            config += f' policy="{self.policy.resolve()}"'
        if self.warm:
            argv = [sys.executable, "-m", "medfl.fl.supernode", "--isolation", "process"]
        else:
            argv = [flower_command("flower-supernode"), "--isolation", "subprocess"]
        argv += ["--superlink", self.server, "--port", str(self.port), "--node-config", config]
        if self.ca is None:
            argv.append("--insecure")
        else:
            argv += ["--root-certificates", str(self.ca.resolve())]
        if self.key is not None:
            argv += ["--auth-supernode-private-key", str(self.key.resolve())]
        if self.max_wait_s is not None:
            argv += ["--max-wait-time", f"{self.max_wait_s:g}"]
        return argv

    def executor_argv(self, supernode_pid: int) -> list[str]:
        """medfl's ClientApp executor for this SuperNode (see medfl.fl.site_executor)."""
        address = f"127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "medfl.fl.site_executor"]
        return [*argv, "--runtime-api-address", address, "--supernode-pid", str(supernode_pid)]


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


class FlowerCli:
    """``flwr`` against one SuperLink, configured in its own Flower home."""

    def __init__(self, home: Path, address: str, ca: Path | None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]"]
        lines.append(f"address = {_toml_string(address)}")
        if ca is None:
            lines.append("insecure = true")
        else:
            lines.append(f"root-certificates = {_toml_string(str(ca.resolve()))}")
        (home / "config.toml").write_text("\n".join(lines) + "\n")

    def _call(self, *args: str) -> dict[str, Any]:
        argv = [flower_command("flwr"), *args, "--format", "json"]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=flower_env(self.home),
                timeout=_CLI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TrainingError(
                f"flwr {args[0]} did not answer within {_CLI_TIMEOUT:g} s"
            ) from None
        try:
            answer: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            answer = {"success": False, "error-message": (done.stderr or done.stdout).strip()}
        if not answer.get("success", False):
            reason = answer.get("error-message") or f"exit code {done.returncode}"
            raise TrainingError(f"flwr {' '.join(args[:2])} failed: {reason}")
        return answer

    def register(self, public_key: Path, site: str) -> str:
        answer = self._call("supernode", "register", str(public_key), CONNECTION, "--name", site)
        return str(answer.get("node-id"))

    def submit(self, run_config: Path) -> int:
        answer = self._call("run", str(app_dir()), CONNECTION, "--run-config", str(run_config))
        return int(answer["run-id"])

    def status(self, run_id: int) -> str:
        """Flower's status of the run, e.g. ``running`` or ``finished:failed``."""
        answer = self._call("ls", CONNECTION, "--run-id", str(run_id))
        runs = answer.get("runs") or [{}]
        return str(runs[0].get("status", "unknown"))

    def stop(self, run_id: int) -> None:
        with contextlib.suppress(TrainingError):  # already finished: nothing to stop
            self._call("stop", str(run_id), CONNECTION)


def write_run_config(path: Path, values: dict[str, str | bool | float]) -> Path:
    """The run config overrides as a TOML file (the spec is long JSON: no shell quoting)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = _toml_string(value)
        lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n")
    return path
