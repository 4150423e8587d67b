"""Shorter waits inside Flower 1.42's deployment processes, for small models.

Flower waits in fixed steps that suit large models and slow links but dominate a
round whose training takes milliseconds (measured: 15-20 s per round of the
heart-disease example on 2 cores, almost all of it waiting):

- a SuperNode with no new message sleeps a hard-coded 3 s before asking the
  SuperLink again, and looks for the ClientApp's reply every 0.5 s;
- an object of a message that is not yet stored where it is pulled from is retried
  after 1 s, then 2 s, 4 s, ... (a message becomes visible before its objects), for
  up to 2 hours: a site killed while sending its reply left the ServerApp's pull
  waiting that long, every other site's reply behind it.

medfl's own processes (the SuperNode wrapper, the site executor, the ServerApp)
call these before Flower starts working. Only the waits change, never the
protocol. ``flwr`` is pinned exactly, and tests/fl/test_quick.py fails if these
names move in another release.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

SUPERNODE_POLL_SECONDS = 0.2  # each poll is an authenticated HTTPS call to the SuperLink
PULL_BACKOFF_SECONDS = 0.02
PULL_BACKOFF_CAP_SECONDS = 0.5
# A message's objects that are not all there by then never will be: its sender died
# mid-send. Medical models are small; raise it for large models on slow links.
PULL_MAX_SECONDS = 30.0


class _CappedSleep:
    """``time`` for one module, but ``sleep`` never longer than ``cap``."""

    def __init__(self, real: ModuleType, cap: float) -> None:
        self._real = real
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        self._real.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def quick_object_pulls() -> None:
    """Retry a missing object after 20 ms, doubling up to 0.5 s, for 30 s at most
    (Flower: 1 s doubling to 10 s, for 2 hours)."""
    from flwr.supercore.inflatable import inflatable_utils

    for function in (
        inflatable_utils.pull_objects,
        inflatable_utils.pull_and_inflate_object_from_tree,
    ):
        defaults = function.__kwdefaults__
        assert defaults is not None  # keyword-only with defaults, in Flower 1.42
        defaults["initial_backoff"] = PULL_BACKOFF_SECONDS
        defaults["backoff_cap"] = PULL_BACKOFF_CAP_SECONDS
        defaults["max_time"] = PULL_MAX_SECONDS


def quick_supernode_polls() -> None:
    """The SuperNode's idle and reply waits capped at SUPERNODE_POLL_SECONDS."""
    from flwr.supernode import start_client_internal

    start_client_internal.time = _CappedSleep(time, SUPERNODE_POLL_SECONDS)  # type: ignore[assignment]
