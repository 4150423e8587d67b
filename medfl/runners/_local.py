"""``--backend local``: Flower's deployment engine on this machine, for real.

One SuperLink and one SuperNode per site, each its own process on a free loopback
port, TLS on every link and each site's key registered with the server (unless
``insecure``). The run is submitted with ``flwr run``; its ServerApp writes the run
directory (the same result.json as the simulation). Every process started here is
stopped on success, failure and Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medfl.deploy import (
    DEPLOYMENT_DIR,
    LOST_SITES_FILE,
    FlowerCli,
    Role,
    ServerCommand,
    ServerTls,
    SiteCommand,
    Supervisor,
    describe_exit,
    flower_env,
    make_server_tls,
    make_site_key,
    write_run_config,
)
from medfl.errors import MedflError, TrainingError, error_from_result
from medfl.results import RoundRecord, RunResult, RunStore
from medfl.spec import Experiment

log = logging.getLogger("medfl.local")

_POLL_SECONDS = 0.2
_STATUS_EVERY_SECONDS = 5.0  # `flwr ls` costs a second of CPU: ask it now and then


@dataclass(frozen=True)
class LocalBackend:
    """Flower's deployment engine on this machine: SuperLink + one SuperNode per site."""

    insecure: bool = False  # no TLS, no site authentication: for debugging only
    tls: ServerTls | None = None  # the user's CA / server certificate; default: made per run
    startup_timeout_s: float = 180.0  # processes start, sites connect and read their data
    round_timeout_s: float = 600.0  # any later request, a round's training included
    name: str = "local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, server: Role, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.exit_code is not None:
            raise TrainingError(f"the server (SuperLink) {_ended(server)}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TrainingError(f"the server (SuperLink) did not listen on port {port} in {timeout:g} s")


def _ended(role: Role) -> str:
    """How a process ended, and its last log lines (Flower's messages, never data)."""
    tail = "\n    ".join(role.last_lines())
    return f"exited with code {role.exit_code} ({describe_exit(role.exit_code)})" + (
        f"; its last log lines:\n    {tail}" if tail else ""
    )


class _LostSites:
    """Sites whose process died: told to the ServerApp through a file it polls, so it
    stops waiting for them at once."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOST_SITES_FILE
        self.reasons: dict[str, str] = {}

    def add(self, site: str, reason: str) -> None:
        self.reasons[site] = reason
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.reasons))
        tmp.replace(self.path)


@dataclass
class _Deployment:
    experiment: Experiment
    backend: LocalBackend
    store: RunStore
    secrets: Path  # keys and Flower's home: a temporary folder, never the run directory
    supervisor: Supervisor

    @property
    def folder(self) -> Path:
        return self.store.path / DEPLOYMENT_DIR

    def start(self) -> FlowerCli:
        tls = None
        if not self.backend.insecure:
            tls = self.backend.tls or make_server_tls(self.secrets / "tls")
        port = free_port()
        server = ServerCommand("127.0.0.1", port, tls, authenticate_sites=tls is not None)
        role = self.supervisor.start("server", server.argv())
        _wait_for_port(port, role, self.backend.startup_timeout_s)
        address = f"127.0.0.1:{port}"
        cli = FlowerCli(self.secrets / "flwr", address, tls.ca if tls else None)
        for site in self.experiment.sites:
            key = None
            if tls is not None:
                key = make_site_key(self.secrets / "keys", site.name)
                cli.register(key.public, site.name)
            command = SiteCommand(
                site.name,
                address,
                free_port(),
                tls.ca if tls else None,
                key.private if key else None,
                max_wait_s=self.backend.startup_timeout_s,
            )
            self.supervisor.start(f"site-{site.name}", command.argv())
        return cli

    def submit(self, cli: FlowerCli, resume: bool) -> int:
        timeouts = (self.backend.startup_timeout_s, self.backend.round_timeout_s)
        return submit_run(cli, self.experiment, self.store.path, resume, timeouts, self.secrets)


def submit_run(
    cli: FlowerCli,
    experiment: Experiment,
    out: Path,
    resume: bool,
    timeouts: tuple[float, float],
    scratch: Path,
) -> int:
    """Submit medfl's Flower app for ``experiment``; its ServerApp writes ``out`` (a
    path on the server's machine). Returns Flower's run id."""
    config = write_run_config(
        scratch / "run-config.toml",
        {
            "medfl-experiment": json.dumps(experiment.to_wire()),
            "medfl-out": str(out.resolve()),
            "medfl-resume": resume,
            "medfl-startup-timeout": float(timeouts[0]),
            "medfl-reply-timeout": float(timeouts[1]),
        },
    )
    return cli.submit(config)


def _notice_exits(supervisor: Supervisor, lost: _LostSites) -> None:
    for role in supervisor.newly_exited():
        if role.name == "server":
            raise TrainingError(f"the server (SuperLink) {_ended(role)}")
        site = role.name.removeprefix("site-")
        reason = f"its process {_ended(role)}"
        log.warning("site %r: %s", site, reason)
        lost.add(site, reason)


def follow(
    store: RunStore,
    cli: FlowerCli,
    run_id: int,
    progress: Callable[[RoundRecord], None] | None,
    done_rounds: int = 0,
    watch: Callable[[], None] = lambda: None,
) -> str:
    """Until Flower says the run finished (its status returned): report new rounds
    from result.json, and call ``watch`` (which may raise) in between."""
    next_status = time.monotonic() + _STATUS_EVERY_SECONDS
    while True:
        watch()
        done_rounds = _report_rounds(store, progress, done_rounds)
        if time.monotonic() >= next_status:
            status = cli.status(run_id)
            if status.startswith("finished"):
                _report_rounds(store, progress, done_rounds)
                return status
            next_status = time.monotonic() + _STATUS_EVERY_SECONDS
        time.sleep(_POLL_SECONDS)


def _report_rounds(
    store: RunStore, progress: Callable[[RoundRecord], None] | None, done: int
) -> int:
    try:
        result = store.load_result()
    except MedflError:  # the ServerApp has not written it yet
        return done
    if progress is not None:
        for record in result.rounds[done:]:
            progress(record)
    return max(done, len(result.rounds))


def _fail(store: RunStore, experiment: Experiment, error: BaseException) -> None:
    """A run the ServerApp could not finish: result.json says so, finished rounds kept."""
    try:
        result = store.load_result()
    except MedflError:
        result = RunResult(name=experiment.name, engine="local")
    if result.status == "failed":
        return  # the ServerApp's own account stands
    result.status = "failed"
    result.error = str(error) if isinstance(error, MedflError) else "interrupted"
    result.error_kind = type(error).__name__ if isinstance(error, MedflError) else "interrupted"
    store.save_result(result)


def run_local(
    experiment: Experiment,
    backend: LocalBackend,
    store: RunStore,
    resume: bool,
    progress: Callable[[RoundRecord], None] | None,
) -> RunResult:
    """Deploy, run and tear down; the RunResult the ServerApp wrote. A failed run
    raises its error as the type it was raised as (DataError, TrainingError)."""
    done = len(store.load_result().rounds) if resume else 0
    with tempfile.TemporaryDirectory(prefix="medfl-deploy-") as secrets:
        supervisor = Supervisor(store.path / DEPLOYMENT_DIR, flower_env(Path(secrets) / "flwr"))
        deployment = _Deployment(experiment, backend, store, Path(secrets), supervisor)
        cli, run_id = None, None
        try:
            cli = deployment.start()
            run_id = deployment.submit(cli, resume)
            lost = _LostSites(store.path / DEPLOYMENT_DIR)
            status = follow(
                store, cli, run_id, progress, done, lambda: _notice_exits(supervisor, lost)
            )
            if store.load_result().status == "running":
                raise TrainingError(f"Flower ended the run before it finished ({status})")
        except BaseException as exc:
            if cli is not None and run_id is not None:
                cli.stop(run_id)
            _fail(store, experiment, exc)
            raise
        finally:
            supervisor.stop_all()
    result = store.load_result()
    if result.status != "succeeded":
        raise error_from_result(result.error_kind, result.error or "the run did not finish")
    return result
