"""The ServerApp: ``drive`` over a GridTransport, so results, checkpoints, minSites
and the rejection of non-finite updates are the fast engine's code path.

Flower runs the ServerApp in a thread of its own; the session carries the run's
inputs in and its outcome (the RunResult, or what ``drive`` raised) back out, so
the caller re-raises the very exception rather than whatever the engine makes of it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from medfl.fl._transport import GridTransport, LostSites, StopSignal, Timeouts
from medfl.results import RunResult, RunStore
from medfl.spec import Experiment

if TYPE_CHECKING:  # medfl.runners imports medfl.fl to run this engine: no import cycle
    from medfl.runners._drive import DriveOptions


@dataclass
class ServerSession:
    """One run of the ServerApp: what it needs, what it produced, how to stop it."""

    experiment: Experiment
    store: RunStore
    options: DriveOptions
    timeouts: Timeouts = field(default_factory=Timeouts)
    stop: StopSignal = field(default_factory=StopSignal)
    lost: LostSites | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    result: RunResult | None = None
    error: BaseException | None = None

    def run(self, grid: Grid) -> None:
        from medfl.runners._drive import drive

        transport = GridTransport(grid, self.experiment, self.timeouts, self.stop, self.lost)
        try:
            self.result = drive(self.experiment, transport, self.store, self.options)
        except BaseException as exc:  # the caller re-raises it; the engine must not see it
            self.error = exc
        finally:
            self.finished.set()

    def outcome(self) -> RunResult:
        """The run's result, or what it raised, as the same exception."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError("Flower's ServerApp ended without a result")
        return self.result


def make_server_app(session: ServerSession) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        session.run(grid)

    return app
