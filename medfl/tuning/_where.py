"""Where a search's trials run, chosen by the type of a small object: in this
machine's Ray (``InProcessTrials``: data the searcher may hold), or submitted as runs
to a federation's server (``FederationTrials``: real hospitals, no row moves)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfl.deploy import FlowerCli
from medfl.spec._policy import PolicyFiles


@dataclass(frozen=True)
class InProcessTrials:
    """Each trial trained by the fast engine inside a Ray actor (Ray here, or the
    cluster at ``ray_address``); ``site_policies``: the simulated sites' own files."""

    ray_address: str | None = None
    site_policies: PolicyFiles = ()


@dataclass(frozen=True)
class FederationTrials:
    """Each trial a Flower run submitted to the SuperLink at ``address`` (``ca``: the
    CA its certificate is signed by; None: no TLS). The sites train on their own
    machines; the run directories are written by the server, under the search folder,
    so the search runs on the server's machine (it reads each trial's result.json)."""

    address: str
    ca: Path | None
    round_timeout_s: float = 600.0  # a site that does not answer a request in time fails
    startup_timeout_s: float = 180.0  # every site connects and reads its data

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.startup_timeout_s, self.round_timeout_s)

    def cli(self, home: Path) -> FlowerCli:
        """``flwr`` against this federation, configured in ``home`` (a scratch folder)."""
        return FlowerCli(home / "flwr", self.address, self.ca)


Where = InProcessTrials | FederationTrials
