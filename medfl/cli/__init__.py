"""The ``medfl`` command. Errors map once to exit codes: 0 success, 2 usage,
3 invalid spec or data, 4 failure during training, 130 interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medfl.cli._commands import cmd_predict, cmd_run, cmd_validate
from medfl.cli._deploy import absolute_path, add_backend, add_round_timeout, add_site_policy
from medfl.cli._deploy import add_parsers as add_deploy_parsers
from medfl.cli._serve import add_parsers as add_serve_parsers
from medfl.cli._stats import add_parsers as add_stats_parsers
from medfl.cli._tune import add_parsers as add_tune_parsers
from medfl.errors import MedflError, TrainingError

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def count(text: str) -> int:  # argparse names the type by its function: "invalid count"
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2147483647, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from medfl import __version__

    parser = argparse.ArgumentParser(
        prog="medfl", description="Federated learning for medical research."
    )
    parser.add_argument("--version", action="version", version=f"medfl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a federated experiment")
    run.add_argument("file", nargs="?", type=Path, help="experiment YAML (spec or manifest)")
    run.add_argument(
        "--engine",
        choices=["fast", "flower", "batched"],
        default=None,
        help="fast: in-process (the default); flower: Flower's simulation engine (Ray); "
        "batched: each round's sites as one stacked computation (the default for a spec "
        "with simulation.virtualSites)",
    )
    run.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default=None,
        help="with --engine batched: where to train (default: the spec's simulation.device)",
    )
    add_backend(run, kubernetes=True)
    add_site_policy(run)
    run.add_argument(
        "--tls-dir",
        type=absolute_path,
        metavar="DIR",
        help="--backend local: use this CA and server certificate (from medfl certs)",
    )
    add_round_timeout(run, "--backend local: ")
    run.add_argument("--out", type=Path, help="run directory (default: runs/NAME-TIMESTAMP)")
    run.add_argument("--seed", type=seed, help="override training.seed")
    run.add_argument("--rounds", type=count, help="override training.rounds")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint",
    )
    run.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the local-only and pooled comparison baselines",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    run.add_argument("--json", action="store_true", help="print result.json to stdout")
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a spec and every site's data")
    validate.add_argument("file", type=Path)
    validate.add_argument("--json", action="store_true", help="print the per-site report as JSON")
    add_site_policy(validate)
    validate.set_defaults(handler=cmd_validate)

    predict = sub.add_parser("predict", help="score new patients with a finished run's model")
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    predict.add_argument("file", type=Path, metavar="FILE", help="CSV or Parquet of patients")
    predict.add_argument("--site", help="apply this site's column and level mappings")
    predict.add_argument(
        "--id-column", metavar="COLUMN", help="copy this column (e.g. a patient id) into the output"
    )
    predict.add_argument("--out", type=Path, help="write CSV here (default: stdout)")
    predict.set_defaults(handler=cmd_predict)
    add_deploy_parsers(sub)
    add_stats_parsers(sub)
    add_tune_parsers(sub)
    add_serve_parsers(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    args = _parser().parse_args(argv)
    if args.command == "run" and (args.file is None) == (args.resume is None):
        _parser().error("run: give FILE, or --resume RUN_DIR (not both)")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.handler
    # SIGTERM (systemd, timeout, kill) stops medfl as Ctrl-C does: every process it
    # started is stopped and a run keeps its finished rounds.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return handler(args)
    except MedflError as exc:
        print(f"medfl: error: {exc}", file=sys.stderr)
        if isinstance(exc, TrainingError) and exc.run_dir:
            print(f"medfl: the rounds finished before it are in {exc.run_dir}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("medfl: interrupted", file=sys.stderr)
        run_dir = getattr(exc, "run_dir", None)
        if run_dir:
            print(f"medfl: continue with: medfl run --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
