"""``medfl run FILE --backend kubernetes``: create the experiment in the current kube
context and follow the operator's status until it ends."""

from __future__ import annotations

import argparse

from rich.console import Console

from medfl.errors import UsageError
from medfl.spec import Experiment


def check_args(args: argparse.Namespace) -> None:
    given = [
        flag
        for flag, value in (
            ("--resume", args.resume),
            ("--engine", args.engine is not None),
            ("--device", args.device is not None),
            ("--insecure", args.insecure),
            ("--tls-dir", args.tls_dir),
            ("--site-policy", args.site_policy),
        )
        if value
    ]
    if given:
        raise UsageError(f"{', '.join(given)}: not with --backend kubernetes")


def _say(console: Console):  # type: ignore[no-untyped-def]
    """Print what changed: the phase, and each condition as it turns."""
    seen: dict[str, tuple[str, str]] = {}

    def changed(status: dict) -> None:  # type: ignore[type-arg]
        for cond in status.get("conditions") or []:
            now = (cond.get("status", ""), cond.get("reason", ""))
            if seen.get(cond["type"]) != now:
                seen[cond["type"]] = now
                console.print(f"{cond['type']}={now[0]} ({now[1]}) {cond.get('message', '')}")
        phase, rounds = status.get("phase", "Pending"), status.get("round", "?")
        console.print(f"phase {phase}, round {rounds}, sites {status.get('sitesReady', '?')}")

    return changed


def run_on_kubernetes(args: argparse.Namespace, experiment: Experiment) -> int:
    from medfl.results import new_run_dir
    from medfl.runners._kubernetes import (
        KubernetesBackend,
        copy_command,
        copy_result,
        outcome,
        submit,
    )

    console = Console(stderr=True, quiet=args.quiet)
    cluster = submit(experiment, KubernetesBackend(namespace=args.namespace))
    console.print(
        f"created FederatedExperiment {cluster.name} in namespace {cluster.namespace}; "
        "following its status (Ctrl-C stops following, not the experiment)"
    )
    status = cluster.follow(2.0 if args.poll is None else args.poll, _say(console))
    out = args.out or new_run_dir(experiment.name)
    copied = copy_result(cluster, experiment, out)
    if copied is not None:
        console.print(f"result.json copied from the submission's log to {copied}", soft_wrap=True)
        if args.json:
            print(copied.read_text())
    else:
        console.print("the submission's log holds no result.json (the run did not start?)")
    outcome(status)
    command = copy_command(cluster, status)
    where = status.get("results") or {}
    if command:
        console.print(
            f"the whole run folder (the model too): claim {where['claimName']}, folder "
            f"{where['path']}; fetch it with:",
            soft_wrap=True,
        )
        print(command)
    else:
        console.print(
            "the operator has no results claim configured: the run folder stayed in the server pod"
        )
    return 0
