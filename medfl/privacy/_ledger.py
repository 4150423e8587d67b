"""A site's privacy ledger: a small JSON file at the site counting the ε every
experiment (and, later, every tuning trial) spent there. Written atomically, under a
lock, after every round, so a run that stops half-way is still counted."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medfl.errors import DataError

VERSION = 1


class Ledger:
    """``entries``: one per run, keyed by ``run`` (a token the site made for that run)."""

    def __init__(self, path: str | Path, site: str) -> None:
        self.path = Path(path)
        self.site = site

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return list(doc["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            # A ledger that cannot be read must never read as "nothing spent".
            raise DataError(
                f"site {self.site!r}: its privacy ledger {self.path} cannot be read; "
                "it takes no part until the file is repaired",
                site=self.site,
            ) from None

    def entry(self, run: str) -> dict[str, Any] | None:
        """``run``'s entry, if this ledger has one."""
        return next((e for e in self.entries() if e["run"] == run), None)

    def spent(self, excluding: str | None = None) -> float:
        """ε spent by every run but ``excluding`` (this one), added up."""
        return sum(float(e["epsilon"]) for e in self.entries() if e["run"] != excluding)

    def record(self, run: str, **fields: Any) -> None:
        """This run's entry, created or brought up to date."""
        with self._locked():
            entries = [e for e in self.entries() if e["run"] != run]
            now = datetime.now(UTC).isoformat(timespec="seconds")
            entries.append({"run": run, **fields, "updated": now})
            self._write({"version": VERSION, "entries": entries})

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, doc: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
