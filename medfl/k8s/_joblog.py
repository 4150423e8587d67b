"""What the submission Job says in its log, for the operator and ``medfl run --backend
kubernetes`` to read back through the API server (``pods/log``): no volume is shared
with either of them.

- a progress line each time the run's result.json gains a round: the rounds done, the
  last round's validation rates (never counts) and the privacy spent per site;
- at the end, result.json itself, gzipped, base64, in numbered lines short enough that
  no container runtime splits them.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

PROGRESS = "medfl-progress"
RESULT = "medfl-result"
RATES = ("loss", "accuracy", "auc", "sensitivity", "specificity", "f1")
_CHUNK = 3000  # characters of base64 a line; runtimes split lines above 16 KiB


def rates(result: dict[str, Any]) -> dict[str, float]:
    """The last round's validation rates: the status is readable by anyone who may
    read the experiment, the confusion counts stay in result.json."""
    rounds = result.get("rounds") or []
    metrics = (rounds[-1].get("metrics") or {}) if rounds else {}
    return {k: float(metrics[k]) for k in RATES if isinstance(metrics.get(k), int | float)}


def privacy_spent(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    sites = ((result.get("privacy") or {}).get("sites")) or {}
    return {
        name: {"epsilon": float(site["epsilon"]), "delta": float(site["delta"])}
        for name, site in sites.items()
        if isinstance(site, dict) and site.get("epsilon") is not None and site.get("delta")
    }


def progress_line(result: dict[str, Any]) -> str:
    said = {
        "rounds": len(result.get("rounds") or []),
        "metrics": rates(result),
        "privacySpent": privacy_spent(result),
    }
    return f"{PROGRESS} {json.dumps(said, sort_keys=True)}"


def last_progress(log: str) -> dict[str, Any] | None:
    """The newest progress line in ``log`` (a tail of it will do)."""
    for line in reversed(log.splitlines()):
        if line.startswith(PROGRESS + " "):
            try:
                said = json.loads(line[len(PROGRESS) + 1 :])
            except ValueError:
                continue
            if isinstance(said, dict):
                return said
    return None


def result_lines(text: str) -> list[str]:
    packed = base64.b64encode(gzip.compress(text.encode())).decode()
    chunks = [packed[i : i + _CHUNK] for i in range(0, len(packed), _CHUNK)] or [""]
    return [f"{RESULT} {i}/{len(chunks)} {chunk}" for i, chunk in enumerate(chunks, 1)]


def read_result(log: str) -> dict[str, Any] | None:
    """result.json from the log's result lines; None when they are missing or torn
    (a log rotated away, a Job killed half-way through writing them)."""
    parts: dict[int, str] = {}
    total = 0
    for line in log.splitlines():
        fields = line.split(" ", 2)
        if len(fields) != 3 or fields[0] != RESULT or "/" not in fields[1]:
            continue
        index, _, count = fields[1].partition("/")
        if not (index.isdigit() and count.isdigit()):
            continue
        if int(count) != total:  # a new set starts (a retried pod's log): keep the last
            parts, total = {}, int(count)
        parts[int(index)] = fields[2]
    if not total or sorted(parts) != list(range(1, total + 1)):
        return None
    try:
        text = gzip.decompress(base64.b64decode("".join(parts[i] for i in sorted(parts))))
        found = json.loads(text)
    except (ValueError, OSError):
        return None
    return found if isinstance(found, dict) else None
