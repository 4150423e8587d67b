"""The fast engine's transport: every site is a SiteWorker in this process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TypeVar

from medfl.data import Preprocessor
from medfl.errors import MedflError
from medfl.privacy import PrivacyResume
from medfl.spec import Experiment
from medfl.spec._policy import SitePolicy
from medfl.training._federation import SiteFailure
from medfl.training._local import LocalUpdate, Params
from medfl.training._metrics import Metrics
from medfl.training._site import SiteHello, SiteWorker, SplitName

T = TypeVar("T")


def _ask(name: str, call: Callable[[], T]) -> T | Exception:
    """A site's answer, or what it raised: one site's failure never stops the others."""
    try:
        return call()
    except MedflError as exc:
        return exc
    except Exception as exc:  # a site's own code failing is data for the server, not a crash
        return SiteFailure(name, f"{type(exc).__name__}: {exc}")


class InProcessTransport:
    def __init__(
        self,
        experiment: Experiment,
        workers: dict[str, SiteWorker] | None = None,
        policies: dict[str, SitePolicy] | None = None,
    ):
        policies = policies or {}
        self.workers = workers or {
            s.name: SiteWorker(experiment, s.name, policy=policies.get(s.name))
            for s in experiment.sites
        }

    def hello(
        self, sites: list[str], resume: Mapping[str, PrivacyResume] | None = None
    ) -> dict[str, SiteHello | Exception]:
        resume = resume or {}
        return {n: _ask(n, partial(self.workers[n].hello, resume.get(n))) for n in sites}

    def configure(self, preprocessor: Preprocessor, base: Params) -> None:
        for worker in self.workers.values():
            if worker._frames:
                worker.configure(preprocessor, base)

    def fit(
        self, server_round: int, params: Params, sites: list[str]
    ) -> dict[str, LocalUpdate | Exception]:
        return {n: _ask(n, partial(self.workers[n].fit, server_round, params)) for n in sites}

    def evaluate(
        self, params: Params, split: SplitName, sites: list[str]
    ) -> dict[str, tuple[Metrics, int] | Exception]:
        return {n: _ask(n, partial(self.workers[n].evaluate, params, split)) for n in sites}

    def personalize(
        self, params: Params, sites: list[str]
    ) -> dict[str, tuple[Metrics, int] | Exception]:
        return {n: _ask(n, partial(self.workers[n].personalize, params)) for n in sites}
