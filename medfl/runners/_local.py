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
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medfl.deploy import (
    DEPLOYMENT_DIR,
    FlowerCli,
    ServerCommand,
    ServerTls,
    SiteCommand,
    SiteKey,
    Supervisor,
    check_server_tls,
    ended,
    flower_env,
    free_port,
    make_server_tls,
    make_site_key,
    wait_for_port,
    write_lost_sites,
    write_run_config,
)
from medfl.errors import MedflError, TrainingError, error_from_result
from medfl.results import RoundRecord, RunResult, RunStore
from medfl.spec import Experiment

log = logging.getLogger("medfl.local")

_POLL_SECONDS = 0.5  # result.json, for progress
# `flwr ls` costs a second of CPU: ask it now and then while the run trains, and
# often once result.json says it ended (the ServerApp is writing the report).
_STATUS_EVERY_SECONDS = 10.0
_STATUS_AT_END_SECONDS = 0.5


@dataclass(frozen=True)
class LocalBackend:
    """Flower's deployment engine on this machine: SuperLink + one SuperNode per site."""

    insecure: bool = False  # no TLS, no site authentication: for debugging only
    tls: ServerTls | None = None  # the user's CA / server certificate; default: made per run
    startup_timeout_s: float = 180.0  # processes start, sites connect and read their data
    round_timeout_s: float = 600.0  # any later request, a round's training included
    warm_sites: bool = True  # False: Flower's stock per-message ClientApp processes (bench)
    site_policies: tuple[tuple[str, Path], ...] = ()  # (site, its policy file)
    name: str = "local"


class _LostSites:
    """Sites whose process died: told to the ServerApp through a file it polls, so it
    stops waiting for them at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.reasons: dict[str, str] = {}

    def add(self, site: str, reason: str) -> None:
        self.reasons[site] = reason
        write_lost_sites(self.run_dir, self.reasons)


@dataclass
class _Deployment:
    experiment: Experiment
    backend: LocalBackend
    store: RunStore | None  # None: runs are submitted by someone else (a search)
    secrets: Path  # keys and Flower's home: a temporary folder, never the run directory
    supervisor: Supervisor
    address: str = ""  # the SuperLink's, once started
    ca: Path | None = None  # the CA its certificate is signed by (None: --insecure)

    def start(self) -> FlowerCli:
        tls = None
        if self.backend.tls is not None:
            check_server_tls(self.backend.tls)
        if not self.backend.insecure:
            tls = self.backend.tls or make_server_tls(self.secrets / "tls")
        port = free_port()
        server = ServerCommand("127.0.0.1", port, tls, authenticate_sites=tls is not None)
        role = self.supervisor.start("server", server.argv())
        wait_for_port(port, role, self.backend.startup_timeout_s)
        address = f"127.0.0.1:{port}"
        self.address, self.ca = address, tls.ca if tls else None
        cli = FlowerCli(self.secrets / "flwr", address, self.ca)
        keys = self._register_sites(cli) if tls is not None else {}
        for site in self.experiment.sites:
            key = keys.get(site.name)
            command = SiteCommand(
                site.name,
                address,
                free_port(),
                tls.ca if tls else None,
                key.private if key else None,
                max_wait_s=self.backend.startup_timeout_s,
                warm=self.backend.warm_sites,
                policy=dict(self.backend.site_policies).get(site.name),
            )
            self.supervisor.start_site(command)
        return cli

    def _register_sites(self, cli: FlowerCli) -> dict[str, SiteKey]:
        """A key pair per site, each public key registered with the server; the
        ``flwr`` calls run side by side (each starts a Python process)."""
        keys = {s.name: make_site_key(self.secrets / "keys", s.name) for s in self.experiment.sites}
        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            calls = [pool.submit(cli.register, key.public, name) for name, key in keys.items()]
            for call in calls:
                call.result()  # raises the first failure
        return keys

    def submit(self, cli: FlowerCli, resume: bool, job: str) -> int:
        assert self.store is not None
        timeouts = (self.backend.startup_timeout_s, self.backend.round_timeout_s)
        # medfl.run writes the report itself, so the ServerApp is done once result.json ends
        return submit_run(
            cli, self.experiment, self.store.path, resume, timeouts, self.secrets, False, job
        )


@dataclass(frozen=True)
class RunningDeployment:
    """A started deployment that takes runs: its SuperLink's address, the CA to trust
    it by, and ``watch``, which raises TrainingError once one of its processes ended."""

    address: str
    ca: Path | None
    watch: Callable[[], None]


@contextmanager
def deployed(
    experiment: Experiment, backend: LocalBackend, log_dir: Path
) -> Iterator[RunningDeployment]:
    """``backend``'s server and the experiment's sites, up while the block runs (a
    search submits many runs to them); every process stopped after, also on failure
    and Ctrl-C. Logs go to ``log_dir``."""
    with tempfile.TemporaryDirectory(prefix="medfl-deploy-") as secrets:
        supervisor = Supervisor(log_dir, flower_env(Path(secrets) / "flwr"))
        deployment = _Deployment(experiment, backend, None, Path(secrets), supervisor)
        try:
            deployment.start()
            yield RunningDeployment(
                deployment.address, deployment.ca, lambda: _any_exit(supervisor)
            )
        finally:
            supervisor.stop_all()


def _any_exit(supervisor: Supervisor) -> None:
    for role in supervisor.newly_exited():
        what = "the server (SuperLink)" if role.site is None else f"site {role.site!r}"
        raise TrainingError(f"{what} {ended(role)}")


def submit_run(
    cli: FlowerCli,
    experiment: Experiment,
    out: Path,
    resume: bool,
    timeouts: tuple[float, float],
    scratch: Path,
    outputs: bool = True,
    job: str = "train",
) -> int:
    """Submit medfl's Flower app for ``experiment``; its ServerApp writes ``out`` (a
    path on the server's machine). ``job``: train, or glm. Returns Flower's run id."""
    config = write_run_config(
        scratch / "run-config.toml",
        {
            "medfl-experiment": json.dumps(experiment.to_wire()),
            "medfl-out": str(out.resolve()),
            "medfl-resume": resume,
            "medfl-startup-timeout": float(timeouts[0]),
            "medfl-reply-timeout": float(timeouts[1]),
            "medfl-write-outputs": outputs,
            "medfl-job": job,
        },
    )
    return cli.submit(config)


def _notice_exits(supervisor: Supervisor, lost: _LostSites) -> None:
    for role in supervisor.newly_exited():
        if role.site is None:
            raise TrainingError(f"the server (SuperLink) {ended(role)}")
        if role.site in lost.reasons:
            continue  # its other process ended first: that is the reason
        what = "ClientApp executor" if role.name.endswith(".apps") else "process"
        reason = f"its {what} {ended(role)}"
        log.warning("site %r: %s", role.site, reason)
        lost.add(role.site, reason)


def follow(
    store: RunStore,
    cli: FlowerCli,
    run_id: int,
    progress: Callable[[RoundRecord], None] | None,
    done_rounds: int = 0,
    watch: Callable[[], None] = lambda: None,
    until_result_ends: bool = False,
) -> str:
    """Until Flower says the run finished (its status returned), or with
    ``until_result_ends`` until result.json says it ended (returns ``"ended"``):
    report new rounds from result.json, and call ``watch`` (which may raise)."""
    next_status = time.monotonic() + _STATUS_EVERY_SECONDS
    while True:
        watch()
        done_rounds, ended = _report_rounds(store, progress, done_rounds)
        if ended and until_result_ends:
            return "ended"
        if time.monotonic() >= next_status:
            status = cli.status(run_id)
            if status.startswith("finished"):
                _report_rounds(store, progress, done_rounds)
                return status
            wait = _STATUS_AT_END_SECONDS if ended else _STATUS_EVERY_SECONDS
            next_status = time.monotonic() + wait
        elif ended:
            next_status = min(next_status, time.monotonic() + _STATUS_AT_END_SECONDS)
        time.sleep(_POLL_SECONDS)


def _report_rounds(
    store: RunStore, progress: Callable[[RoundRecord], None] | None, done: int
) -> tuple[int, bool]:
    """Report rounds not yet reported; how many are done, and whether the run ended."""
    try:
        result = store.load_result()
    except MedflError:  # the ServerApp has not written it yet
        return done, False
    if progress is not None:
        for record in result.rounds[done:]:
            progress(record)
    return max(done, len(result.rounds)), result.status != "running"


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


def _still_running(store: RunStore) -> bool:
    """No result.json yet counts as running: the ServerApp ended before it began."""
    try:
        return store.load_result().status == "running"
    except MedflError:
        return True


def _mark_running(store: RunStore) -> None:
    result = store.load_result()
    result.status, result.error, result.error_kind = "running", None, None
    store.save_result(result)


def run_local(
    experiment: Experiment,
    backend: LocalBackend,
    store: RunStore,
    resume: bool,
    progress: Callable[[RoundRecord], None] | None,
    job: str = "train",
) -> RunResult:
    """Deploy, run and tear down; the RunResult the ServerApp wrote. A failed run
    raises its error as the type it was raised as (DataError, TrainingError).
    ``job`` glm: the ServerApp fits the experiment's GLM and writes glm.json."""
    done = len(store.load_result().rounds) if resume else 0
    if resume:
        _mark_running(store)  # the ServerApp's end is seen as result.json's status change
    with tempfile.TemporaryDirectory(prefix="medfl-deploy-") as secrets:
        supervisor = Supervisor(store.path / DEPLOYMENT_DIR, flower_env(Path(secrets) / "flwr"))
        deployment = _Deployment(experiment, backend, store, Path(secrets), supervisor)
        cli, run_id = None, None
        try:
            cli = deployment.start()
            run_id = deployment.submit(cli, resume, job)
            lost = _LostSites(store.path)
            status = follow(
                store, cli, run_id, progress, done, lambda: _notice_exits(supervisor, lost), True
            )
            if _still_running(store):
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
