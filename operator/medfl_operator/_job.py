"""The submission Job's entry point: ``python -m medfl_operator._job submit ...`` runs
``medfl submit ...`` and tells the operator and the user how it goes, through channels
that need no volume:

- while it runs, a progress line in its log each time result.json gains a round
  (medfl.k8s._joblog), which the operator reads through ``pods/log`` for the status's
  currentRound, metrics and privacySpent;
- at the end, a short summary of the run as the container's termination message (the
  rounds done, the last round's validation metrics, the error), and result.json itself
  in the log, which ``medfl run --backend kubernetes`` copies.

Only rates are passed on in the status, no counts: the status is readable by anyone who
may read the experiment; the confusion counts are in result.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medfl.k8s._joblog import progress_line, rates, result_lines

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_ENV = "MEDFL_TERMINATION_LOG"  # elsewhere than a pod (tests)
MARK = "medflSummary"  # tells a summary from a message that is just log lines
_LIMIT = 4096  # what the kubelet keeps of a termination message
_ERROR_LIMIT = 2000
POLL_S = 2.0  # how often result.json is looked at while the run goes on


def summary(result: dict[str, Any]) -> dict[str, Any]:
    rounds = result.get("rounds") or []
    out: dict[str, Any] = {MARK: 1, "rounds": len(rounds), "status": result.get("status")}
    out["metrics"] = rates(result)
    if result.get("error"):
        out["error"] = str(result["error"])[:_ERROR_LIMIT]
    return out


def _out_folder(argv: Sequence[str]) -> Path | None:
    """The run folder the summary reads: a search's is its best run's, ``<out>/best``."""
    args = list(argv)
    if "--out" not in args[:-1]:
        return None
    out = Path(args[args.index("--out") + 1])
    return out / "best" if args[:1] == ["tune"] else out


def _read(out: Path | None) -> tuple[str, dict[str, Any]] | None:
    """result.json's text and content; None before it exists or while half-written."""
    if out is None or not (out / "result.json").is_file():
        return None
    try:
        text = (out / "result.json").read_text()
        found = json.loads(text)
    except (OSError, ValueError):
        return None
    return (text, found) if isinstance(found, dict) else None


def write_summary(out: Path | None, env: dict[str, str]) -> None:
    """Write the summary where the kubelet reads it; without a result.json (the run never
    started) write nothing, so the kubelet falls back to the log's last lines."""
    read = _read(out)
    if read is None:
        return
    text = json.dumps(summary(read[1]))[:_LIMIT]
    Path(env.get(TERMINATION_ENV, TERMINATION_LOG)).write_text(text)


class Progress:
    """Says a progress line whenever result.json's rounds or privacy change."""

    def __init__(self, out: Path | None) -> None:
        self.out, self.said = out, ""

    def check(self) -> None:
        read = _read(self.out)
        if read is None:
            return
        line = progress_line(read[1])
        if line != self.said:
            print(line, flush=True)
            self.said = line


def print_result(out: Path | None) -> None:
    read = _read(out)
    if read is not None:
        print("\n".join(result_lines(read[0])), flush=True)


RAY_EXPERIMENT_ENV = "MEDFL_EXPERIMENT"  # medfl_operator._render.ray_job sets it
RAY_SEARCH_DIR = "/tmp/medfl-search"  # on the Ray head; result.json comes back by the log


def ray_argv(env: dict[str, str], folder: Path) -> list[str]:
    """``tune-ray`` (a RayJob's entry point, on the Ray head): the spec from the job's
    environment into a file, then ``medfl tune`` on the Ray cluster it runs in."""
    spec = folder / "experiment.json"  # JSON is YAML: medfl reads it as a spec file
    spec.write_text(env[RAY_EXPERIMENT_ENV])
    return ["tune", str(spec), "--ray-address", "auto", "--out", str(folder / "search")]


def main(argv: Sequence[str], poll_s: float = POLL_S) -> int:
    if list(argv[:1]) == ["tune-ray"]:
        folder = Path(RAY_SEARCH_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        argv = ray_argv(dict(os.environ), folder)
    out = _out_folder(argv)
    progress = Progress(out)
    process = subprocess.Popen([sys.executable, "-m", "medfl", *argv])
    # the kubelet stops a pod with SIGTERM to its first process, this one
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    while process.poll() is None:
        time.sleep(poll_s)
        progress.check()
    progress.check()
    write_summary(out, dict(os.environ))
    print_result(out)
    return process.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
