"""The submission Job's entry point: ``python -m medfl_operator._job submit ...`` runs
``medfl submit ...`` and then leaves the operator a short summary of the run as the
container's termination message (the one channel from a finished pod to the operator
that needs no volume): the rounds done, the last round's validation metrics, the error.

Only rates are passed on, no counts: the status is readable by anyone who may read the
experiment, the confusion counts stay in result.json on the results claim.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_ENV = "MEDFL_TERMINATION_LOG"  # elsewhere than a pod (tests)
RATES = ("loss", "accuracy", "auc", "sensitivity", "specificity", "f1")
MARK = "medflSummary"  # tells a summary from a message that is just log lines
_LIMIT = 4096  # what the kubelet keeps of a termination message
_ERROR_LIMIT = 2000


def summary(result: dict[str, Any]) -> dict[str, Any]:
    rounds = result.get("rounds") or []
    metrics = (rounds[-1].get("metrics") or {}) if rounds else {}
    out: dict[str, Any] = {MARK: 1, "rounds": len(rounds), "status": result.get("status")}
    out["metrics"] = {
        k: float(metrics[k]) for k in RATES if isinstance(metrics.get(k), int | float)
    }
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


def write_summary(out: Path | None, env: dict[str, str]) -> None:
    """Write the summary where the kubelet reads it; without a result.json (the run never
    started) write nothing, so the kubelet falls back to the log's last lines."""
    if out is None or not (out / "result.json").is_file():
        return
    try:
        result = json.loads((out / "result.json").read_text())
    except ValueError:
        return
    text = json.dumps(summary(result))[:_LIMIT]
    Path(env.get(TERMINATION_ENV, TERMINATION_LOG)).write_text(text)


def main(argv: Sequence[str]) -> int:
    code = subprocess.call([sys.executable, "-m", "medfl", *argv])
    write_summary(_out_folder(argv), dict(os.environ))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
