"""The deployment commands: ``medfl certs``, ``medfl server``, ``medfl site`` and
``medfl submit`` — a federation across machines, each role a thin wrapper over
Flower's own process with medfl's defaults (TLS on, sites authenticated)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from medfl.errors import TrainingError, UsageError
from medfl.spec import Experiment
from medfl.spec._policy import PolicyFiles

INSECURE_WARNING = (
    "WARNING: --insecure: no TLS and no site authentication. Anyone on the network can "
    "read the model updates and join as a site. Use it only to debug, never with patient data."
)
DEFAULT_PORT = 9091


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    certs = sub.add_parser("certs", help="make a CA, the server certificate and site keys")
    certs.add_argument("folder", type=Path, metavar="DIR")
    certs.add_argument(
        "--server-host",
        action="append",
        default=[],
        metavar="HOST",
        help="the server's host name or IP address as sites reach it (repeatable)",
    )
    certs.add_argument(
        "--site", action="append", default=[], metavar="NAME", help="make a key for this site"
    )
    certs.set_defaults(handler=cmd_certs)

    server = sub.add_parser("server", help="run the federation's server (a Flower SuperLink)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    _security(server, "DIR holding ca.pem, server.pem and server.key (from medfl certs)")
    server.add_argument(
        "--site-key",
        action="append",
        default=[],
        metavar="NAME=PUBKEY",
        help="register a site's public key (repeatable); only registered sites may join",
    )
    server.add_argument("--database", type=Path, help="keep Flower's state in this file")
    _add_log_dir(server)
    server.set_defaults(handler=cmd_server)

    site = sub.add_parser("site", help="run one hospital's site (a Flower SuperNode)")
    site.add_argument("--name", required=True, help="the site's name in the experiment")
    site.add_argument("--server", required=True, metavar="HOST:PORT")
    site.add_argument("--data", type=Path, help="this site's CSV or Parquet file")
    site.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="this site's own policy (YAML: disclosure limits it enforces); default limits",
    )
    _security(site, "DIR holding ca.pem and NAME.key (from medfl certs)")
    site.add_argument("--port", type=int, default=9094, help="the site's local Flower API port")
    _add_log_dir(site)
    site.set_defaults(handler=cmd_site)

    submit = sub.add_parser("submit", help="submit an experiment to a running server")
    submit.add_argument("file", type=Path, help="experiment YAML (spec or manifest)")
    submit.add_argument("--server", required=True, metavar="HOST:PORT")
    _security(submit, "DIR holding ca.pem (from medfl certs)")
    submit.add_argument(
        "--out", type=Path, help="run directory, on the server's machine (default: runs/NAME-TIME)"
    )
    add_round_timeout(submit)
    submit.set_defaults(handler=cmd_submit)


def _add_log_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-dir", type=Path, help="write Flower's log here (default: a new folder)"
    )


def add_backend(parser: argparse.ArgumentParser, kubernetes: bool = False) -> None:
    """--backend and --insecure, as every command that runs over the sites has them
    (and ``medfl run`` also --backend kubernetes)."""
    parser.add_argument(
        "--backend",
        choices=["simulation", "local", *(["kubernetes"] if kubernetes else [])],
        default="simulation",
        help="simulation: one process (default); local: Flower's deployment engine, a server "
        "and one process per site on this machine, TLS and site authentication on"
        + ("; kubernetes: a FederatedExperiment in the current kube context" if kubernetes else ""),
    )
    if kubernetes:
        parser.add_argument(
            "--namespace", help="--backend kubernetes: default the kube context's namespace"
        )
        parser.add_argument("--poll", type=float, help=argparse.SUPPRESS)  # seconds; tests
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="--backend local without TLS or site authentication (debugging only)",
    )


def add_site_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site-policy",
        action="append",
        default=[],
        metavar="SITE=FILE",
        help="a site's own policy file, as `medfl site --policy` reads it (repeatable); "
        "sites without one keep the default disclosure limits",
    )


def site_policies(args: argparse.Namespace, experiment: Experiment) -> PolicyFiles:
    """--site-policy pairs, each file read now so a mistake in it is said before any work."""
    from medfl.spec._policy import load_policy

    names = [s.name for s in experiment.sites]
    out: dict[str, Path] = {}
    for pair in args.site_policy:
        site, sep, path = pair.partition("=")
        if not sep or site not in names:
            raise UsageError(f"--site-policy {pair!r}: expected SITE=FILE with SITE one of {names}")
        if site in out:
            raise UsageError(f"--site-policy: site {site!r} is given twice")
        load_policy(path)
        out[site] = Path(path).resolve()
    return tuple(out.items())


def add_round_timeout(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--round-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        default=600.0,
        help=f"{prefix}fail a site that does not answer a request within this time",
    )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _security(parser: argparse.ArgumentParser, tls_help: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    # absolute: Flower's own configuration refuses relative certificate paths
    group.add_argument("--tls-dir", type=absolute_path, metavar="DIR", help=tls_help)
    group.add_argument("--insecure", action="store_true", help="no TLS (debugging only)")


def absolute_path(text: str) -> Path:
    return Path(text).expanduser().resolve()


def warn_insecure(args: argparse.Namespace) -> None:
    if getattr(args, "insecure", False):
        Console(stderr=True).print(f"[bold red]{INSECURE_WARNING}[/]")


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise UsageError(f"--tls-dir {folder}: {name} is missing (make it with medfl certs)")
    return path


def _site_key(folder: Path, site: str) -> Path:
    """The site's private key: in the folder a hospital was given, or where medfl
    certs put it (sites/)."""
    for key in (folder / f"{site}.key", folder / "sites" / f"{site}.key"):
        if key.is_file():
            return key
    raise UsageError(
        f"--tls-dir {folder}: {site}.key is missing (looked in it and in its sites/ "
        "folder; make it with medfl certs)"
    )


def server_tls(folder: Path):  # type: ignore[no-untyped-def]
    from medfl.deploy import ServerTls, check_server_tls

    tls = ServerTls(
        _need(folder, "ca.pem"), _need(folder, "server.pem"), _need(folder, "server.key")
    )
    check_server_tls(tls)
    return tls


def cmd_certs(args: argparse.Namespace) -> int:
    """A new federation's CA, server certificate and site keys; in a folder that has
    them already, only the keys of sites it lacks (a hospital joining later). Nothing
    is ever overwritten: a new CA would cut off every site that trusts the old one."""
    from medfl.deploy import ServerTls, make_server_tls, make_site_key

    folder: Path = args.folder
    existing = [n for n in ("ca.pem", "server.pem", "server.key") if (folder / n).exists()]
    taken = [n for n in args.site if (folder / "sites" / f"{n}.key").exists()]
    if taken:
        raise UsageError(f"{folder / 'sites'} already holds a key for {', '.join(taken)}: kept")
    if existing and len(existing) < 3:
        raise UsageError(f"{folder} holds only {', '.join(existing)}: not a complete set; kept")
    if existing:
        tls = ServerTls(folder / "ca.pem", folder / "server.pem", folder / "server.key")
        lines = [f"server: kept the existing CA and certificate in {folder}"]
    else:
        tls = make_server_tls(folder, args.server_host)
        lines = [f"server: {tls.ca}, {tls.cert}, {tls.key} (keep server.key and ca.key private)"]
    for name in args.site:
        key = make_site_key(folder / "sites", name)
        lines.append(f"site {name}: {key.private} (private: only on that site) and {key.public}")
    lines.append(f"every site also needs {tls.ca}")
    print("\n".join(lines), file=sys.stderr)
    return 0


def _site_keys(pairs: list[str]) -> list[tuple[str, Path]]:
    keys = []
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--site-key {pair!r}: expected NAME=PATH/TO/NAME.pub")
        if not Path(path).is_file():
            raise UsageError(f"--site-key {name}: {path} does not exist")
        keys.append((name, Path(path)))
    return keys


_CONNECTED = ("SuperNode ID", "Connection successful")


class _SiteNotices:
    """What a site's operator needs from Flower's log, said once: connected, or that
    the server cannot be reached yet (Flower retries quietly, forever)."""

    def __init__(self, log: Path, site: str, server: str) -> None:
        self.log, self.site, self.server = log, site, server
        self.offset = 0
        self.connected = False
        self.next_warning = 0.0

    def __call__(self) -> None:
        import time

        try:
            with self.log.open(errors="replace") as handle:
                handle.seek(self.offset)
                lines = handle.readlines()
                self.offset = handle.tell()
        except OSError:
            return
        for line in lines:
            if any(m in line for m in _CONNECTED) and not self.connected:
                self.connected = True
                print(f"medfl: site {self.site!r} connected to {self.server}", file=sys.stderr)
            elif "Connection attempt failed" in line:
                self.connected = False
                self._not_yet(time.monotonic())

    def _not_yet(self, now: float) -> None:
        if now < self.next_warning:
            return
        self.next_warning = now + 60  # once a minute while it keeps trying
        print(
            f"medfl: cannot reach the server at {self.server} (is it running, is the "
            "address or port right, is the port open?); still trying",
            file=sys.stderr,
        )


def _supervise(supervisor, watch: Callable[[], None] = lambda: None) -> int:  # type: ignore[no-untyped-def]
    """Wait until one of the supervisor's processes ends, or Ctrl-C; then stop them all."""
    import time

    from medfl.deploy import ended

    try:
        while not (stopped := supervisor.newly_exited()):
            watch()
            time.sleep(0.5)
    finally:
        supervisor.stop_all()
    role = stopped[0]
    if role.exit_code == 0:  # Flower ended it, e.g. a restarted server no longer knows it
        tail = "\n    ".join(role.last_lines())
        raise TrainingError(
            f"{role.name} ended on its own (a server restarted without --database no longer "
            f"knows this site: restart the site); its last log lines:\n    {tail}"
        )
    raise TrainingError(f"{role.name} {ended(role)}")


def cmd_server(args: argparse.Namespace) -> int:
    from medfl.deploy import FlowerCli, ServerCommand, Supervisor, flower_env, wait_for_port

    warn_insecure(args)
    keys = _site_keys(args.site_key)
    if keys and args.insecure:
        raise UsageError("--site-key needs TLS: site authentication does not work with --insecure")
    tls = None if args.insecure else server_tls(args.tls_dir)
    command = ServerCommand(
        args.host, args.port, tls, authenticate_sites=tls is not None, database=args.database
    )
    with tempfile.TemporaryDirectory(prefix="medfl-server-") as home:
        supervisor = Supervisor(_log_dir(args), flower_env(Path(home) / "flwr"))
        role = supervisor.start("server", command.argv())
        _stream_log_path(role.log)
        try:
            wait_for_port(args.port, role, 60.0)
            cli = FlowerCli(Path(home) / "flwr", f"127.0.0.1:{args.port}", tls.ca if tls else None)
            for name, path in keys:
                print(f"medfl: site {name!r} {_register(cli, path, name)}", file=sys.stderr)
        except BaseException:
            supervisor.stop_all()
            raise
        print(
            f"medfl: server listening on {args.host}:{args.port}; Ctrl-C stops it", file=sys.stderr
        )
        return _supervise(supervisor)


def _register(cli, public_key: Path, site: str) -> str:  # type: ignore[no-untyped-def]
    """Register a site's key; one the server knows already (its --database kept it)
    is no error."""
    try:
        cli.register(public_key, site)
    except TrainingError as exc:
        if "already in use" not in str(exc):
            raise
        return "was registered already (kept in the server's database)"
    return "registered"


def _log_dir(args: argparse.Namespace) -> Path:
    """Where Flower's own log goes: --log-dir, else a new folder that outlives the run."""
    return Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="medfl-logs-"))


def _stream_log_path(log: Path) -> None:
    print(f"medfl: Flower's log: {log}", file=sys.stderr)


def cmd_site(args: argparse.Namespace) -> int:
    from medfl.deploy import SiteCommand, Supervisor, flower_env

    warn_insecure(args)
    ca = key = None
    if not args.insecure:
        ca = _need(args.tls_dir, "ca.pem")
        key = _site_key(args.tls_dir, args.name)
    if args.data is not None and not args.data.is_file():
        raise UsageError(f"--data {args.data}: no such file")
    if args.policy is not None:
        from medfl.spec._policy import load_policy

        load_policy(args.policy)  # a mistake in it is said now, not at the first request
    command = SiteCommand(args.name, args.server, args.port, ca, key, args.data, args.policy)
    with tempfile.TemporaryDirectory(prefix="medfl-site-") as home:
        supervisor = Supervisor(_log_dir(args), flower_env(Path(home) / "flwr"))
        role = supervisor.start_site(command)
        _stream_log_path(role.log)
        print(
            f"medfl: site {args.name!r} connecting to {args.server}; Ctrl-C stops it",
            file=sys.stderr,
        )
        return _supervise(supervisor, _SiteNotices(role.log, args.name, args.server))


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit, then follow the run until Flower says it finished. Progress and the
    summary come from result.json when the run directory is on this machine."""
    from medfl.cli._commands import _progress_bar, _summary, round_progress
    from medfl.deploy import FlowerCli
    from medfl.errors import MedflError, error_from_result
    from medfl.results import RunStore, new_run_dir
    from medfl.runners._local import follow, submit_run
    from medfl.spec import load_experiment
    from medfl.spec._load import resolve_paths

    warn_insecure(args)
    experiment = resolve_paths(load_experiment(args.file), Path.cwd())
    ca = None if args.insecure else _need(args.tls_dir, "ca.pem")
    out = (args.out or new_run_dir(experiment.name)).resolve()
    if (out / "result.json").exists():
        raise UsageError(f"{out} already holds a run: choose another --out folder")
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="medfl-submit-") as home:
        cli = FlowerCli(Path(home) / "flwr", args.server, ca)
        run_id = submit_run(cli, experiment, out, False, (180.0, args.round_timeout), Path(home))
        console.print(f"submitted as Flower run {run_id}; its results go to {out} on the server")
        store = RunStore(out)
        with _progress_bar(console) as bar:
            task = bar.add_task("rounds", total=experiment.training.rounds, metrics="")
            try:
                status = follow(store, cli, run_id, round_progress(bar, task))
            except KeyboardInterrupt:
                cli.stop(run_id)
                raise
    try:
        result = store.load_result()
    except MedflError:
        console.print(f"Flower run {run_id}: {status} (the run directory is not on this machine)")
        return 0 if status == "finished:completed" else 4
    if result.status != "succeeded":
        raise error_from_result(result.error_kind, result.error or f"Flower run {status}")
    _summary(result, out, console)
    return 0
