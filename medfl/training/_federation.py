"""The server's side of a federated run, independent of how messages travel.

The fast engine hands it an in-process transport; Flower's ServerApp hands it one
that sends Flower messages. Everything else (who takes part, rejecting updates,
minSites, aggregation, metrics) is this one code path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from medfl.data import Preprocessor
from medfl.errors import BudgetSpent, DataError, DisclosureRefusal, SiteExcluded, TrainingError
from medfl.privacy import PrivacyResume, PrivacySpent
from medfl.privacy._central import CentralNoise, central_plan, resumed
from medfl.results._model import Evaluation, RoundRecord, SiteEvaluation, SiteRound
from medfl.spec import Experiment
from medfl.training._aggregate import ServerOptimizer, weighted_average
from medfl.training._local import LocalUpdate, Params
from medfl.training._metrics import Metrics, unweighted, weighted
from medfl.training._secure import SecureRequest, SecureSum, max_weight, update_problem
from medfl.training._site import SiteHello, SplitName
from medfl.training._start import StartingModel, choose_preprocessor, read_source, starting_model

log = logging.getLogger("medfl.federation")


class SiteFailure(Exception):
    """A site did not answer a request; ``reason`` is safe to show (no patient values)."""

    def __init__(self, site: str, reason: str) -> None:
        self.site = site
        self.reason = reason
        super().__init__(f"site {site!r}: {reason}")


class Transport(Protocol):
    """How the server reaches the sites. Each call answers per site: a value or the
    exception that site raised (a DataError, a SiteFailure)."""

    def hello(
        self, sites: list[str], resume: Mapping[str, PrivacyResume] | None = None
    ) -> dict[str, SiteHello | Exception]: ...

    def configure(self, preprocessor: Preprocessor, base: Params) -> None: ...

    def fit(
        self, server_round: int, params: Params, sites: list[str]
    ) -> dict[str, LocalUpdate | Exception]: ...

    def evaluate(
        self, params: Params, split: SplitName, sites: list[str]
    ) -> dict[str, tuple[Metrics, int] | Exception]: ...

    def personalize(
        self, params: Params, sites: list[str]
    ) -> dict[str, tuple[Metrics, int] | Exception]: ...


class SecureTransport(Transport, Protocol):
    """A transport whose sites can mask their updates (SecAgg+): Flower's messages."""

    def secure_fit(self, request: SecureRequest, params: Params, sites: list[str]) -> SecureSum: ...


@dataclass
class Checkpoint:
    """Enough to continue a run after its last finished round."""

    params: Params
    optimizer: dict[str, object]
    rounds: list[RoundRecord] = field(default_factory=list)
    central: dict[str, Any] | None = None  # privacy.central as result.json had it
    stopped: dict[str, str] = field(default_factory=dict)  # sites whose budget was spent -> why


@dataclass
class Setup:
    """What is known before round 1."""

    active: list[str]
    excluded: dict[str, str]
    hellos: dict[str, SiteHello]
    preprocessor: Preprocessor
    start: StartingModel
    notes: list[str] = field(default_factory=list)


RoundHook = Callable[[RoundRecord, Params, ServerOptimizer], None]


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, SiteFailure) else str(exc)


class Federation:
    """Runs the rounds of one experiment over a transport."""

    def __init__(self, experiment: Experiment, transport: Transport) -> None:
        self.experiment = experiment
        self.transport = transport
        self.optimizer = ServerOptimizer(experiment.strategy)
        self.spent: dict[str, PrivacySpent] = {}  # with DP: each site's ε so far
        self.stopped: dict[str, str] = {}  # sites whose privacy budget is spent -> why
        self.central: CentralNoise | None = None  # privacy.mode central: the server's noise
        self.max_weight = 1.0  # secure aggregation: what a site's weight is a share of
        self.clipped_values: dict[str, int] = {}  # per site: values SecAgg+'s range clipped

    # --- before round 1 ----------------------------------------------------

    def setup(
        self, sites: list[str] | None = None, resume: Mapping[str, PrivacyResume] | None = None
    ) -> Setup:
        """Ask every site for its aggregates; fail naming the site, or skip empty sites.
        Then the starting model, sent with the input encoding to every site. ``resume``:
        a resumed run's sites continue their DP accounting from there."""
        weights = read_source(self.experiment)  # a bad weights file fails before any site works
        names = sites or [s.name for s in self.experiment.sites]
        answers = self.transport.hello(names, resume)
        hard = [
            a
            for a in answers.values()
            if isinstance(a, Exception) and not isinstance(a, SiteExcluded)
        ]
        if hard:
            raise _combined(hard)
        excluded = {n: str(a) for n, a in answers.items() if isinstance(a, SiteExcluded)}
        hellos = {n: a for n, a in answers.items() if isinstance(a, SiteHello)}
        need = min(self.experiment.min_sites, len(names))
        if len(hellos) < need:
            reasons = "; ".join(excluded.values())
            raise DataError(
                f"only {len(hellos)} of {len(names)} site(s) have usable data and minSites is "
                f"{need}: {reasons}"
            )
        _check_both_classes(self.experiment, hellos)
        summaries = [h.summary for h in hellos.values()]
        preprocessor, notes = choose_preprocessor(self.experiment, summaries, weights)
        start = starting_model(self.experiment, preprocessor, weights)
        self.transport.configure(preprocessor, start.base)
        notes += start.notes + _withheld_notes(hellos)
        return Setup(list(hellos), excluded, hellos, preprocessor, start, notes)

    # --- rounds ------------------------------------------------------------

    def run_rounds(
        self,
        setup: Setup,
        start: Checkpoint,
        on_round: RoundHook | None = None,
        min_sites: int | None = None,
    ) -> Params:
        """Rounds after those in ``start``; raises TrainingError when too few sites remain."""
        params = start.params
        if start.optimizer:
            self.optimizer.load_state(start.optimizer)
        need = min(min_sites or self.experiment.min_sites, len(setup.active))
        self.spent, self.stopped = {}, dict(start.stopped)  # a stopped site stays stopped
        self.central = self._central_noise(len(setup.active), start)
        if self.experiment.privacy.secure:
            largest = max(setup.hellos[n].summary.n for n in setup.active)
            self.max_weight = max_weight(largest, central=self.central is not None)
        for r in range(len(start.rounds) + 1, self.experiment.training.rounds + 1):
            began = time.perf_counter()
            params, record = self._round(r, params, setup.active, need)
            record.seconds = time.perf_counter() - began
            if on_round:
                on_round(record, params, self.optimizer)
        return params

    def _round(
        self, r: int, params: Params, active: list[str], need: int
    ) -> tuple[Params, RoundRecord]:
        sites = {n: SiteRound(status="stopped", reason=why) for n, why in self.stopped.items()}
        accepted: list[tuple[Params, int]] = []
        training = [n for n in active if n not in self.stopped]
        masked = self._secure_fit(r, params, training) if self.experiment.privacy.secure else None
        answers = masked.answers if masked else self.transport.fit(r, params, training)
        for name, answer in answers.items():
            sites[name] = _site_round(answer, params, masked is not None)
            if isinstance(answer, BudgetSpent):  # it trains no more; it still evaluates
                self.stopped[name] = str(answer)
                continue
            if isinstance(answer, LocalUpdate) and answer.privacy is not None:
                self.spent[name] = answer.privacy
            if sites[name].status == "ok":
                assert isinstance(answer, LocalUpdate)
                accepted.append((answer.params, answer.num_examples))
            else:
                log.warning(
                    "round %d: site %r %s: %s", r, name, sites[name].status, sites[name].reason
                )
        if len(accepted) < need:
            bad = {n: s.reason for n, s in sites.items() if s.status != "ok"}
            detail = "; ".join(f"{n}: {why}" for n, why in bad.items())
            raise TrainingError(
                f"round {r}: only {len(accepted)} site(s) returned a usable update and "
                f"minSites is {need} ({detail})"
            )
        average = (
            self._unmasked(r, params, masked) if masked else self._aggregate(r, params, accepted)
        )
        params = self.optimizer.apply(params, average)
        per_site = []
        for name, scored in self.transport.evaluate(params, "validation", active).items():
            if isinstance(scored, DisclosureRefusal):  # the site's hello report says so
                sites[name].withheld = str(scored)
                continue
            if isinstance(scored, Exception):
                sites[name].reason = sites[name].reason or f"evaluation failed: {_reason(scored)}"
                continue
            sites[name].metrics, sites[name].validation_examples = scored
            per_site.append(scored)
        ordered = {n: sites[n] for n in active if n in sites}  # the sites' order, every engine
        return params, RoundRecord(round=r, metrics=weighted(per_site), sites=ordered)

    def _aggregate(self, r: int, params: Params, accepted: list[tuple[Params, int]]) -> Params:
        if self.central is None:
            return weighted_average(accepted)
        return self.central.aggregate(params, [p for p, _ in accepted], r)

    def _secure_fit(self, r: int, params: Params, sites: list[str]) -> SecureSum:
        """The round's updates under SecAgg+: the server gets their weighted mean only.
        With central DP each site clips its own change and counts once."""
        transport = self.transport
        if not hasattr(transport, "secure_fit"):
            raise TrainingError(
                "privacy.secureAggregation needs Flower's messages (SecAgg+): run with "
                "--engine flower, --backend local or --backend kubernetes"
            )
        norm = self.central.norm if self.central is not None else None
        request = SecureRequest(r, self.max_weight, norm)
        return cast(SecureTransport, transport).secure_fit(request, params, sites)

    def _unmasked(self, r: int, params: Params, masked: SecureSum) -> Params:
        problem = masked.check(params, r, bit=self.central is not None)
        if problem is not None:
            raise TrainingError(problem)
        for site, count in masked.clipped_values.items():
            self.clipped_values[site] = self.clipped_values.get(site, 0) + count
        if self.central is None:
            return masked.average(params)
        total, unclipped = masked.clipped_total(self.experiment.privacy.secure_aggregation)
        return self.central.noised(params, total, masked.weight, unclipped, r)

    def _central_noise(self, sites: int, start: Checkpoint) -> CentralNoise | None:
        privacy, training = self.experiment.privacy, self.experiment.training
        if not privacy.central:
            return None
        seed = training.seed if privacy.reproducible_noise else None
        plan = central_plan(privacy, training.rounds)
        noise = CentralNoise(plan, sites, seed, rounds_done=len(start.rounds))
        return resumed(noise, start.central)

    # --- after the last round ---------------------------------------------

    def evaluate(self, params: Params, active: list[str], split: SplitName = "test") -> Evaluation:
        return _evaluation(self.transport.evaluate(params, split, active), "final evaluation")

    def personalize(self, params: Params, active: list[str], notes: list[str]) -> Evaluation:
        """Each site fine-tunes ``params`` on its training split and scores the result on
        its test split; the fine-tuned models stay at the sites."""
        answers = self.transport.personalize(params, active)
        for name, answer in answers.items():
            if isinstance(answer, Exception):
                notes.append(f"site {name!r} has no personalised model: {_reason(answer)}")
        return _evaluation(answers, "fine-tuning")


def _evaluation(answers: dict[str, tuple[Metrics, int] | Exception], what: str) -> Evaluation:
    sites, withheld = {}, {}
    for name, answer in answers.items():
        if isinstance(answer, DisclosureRefusal):
            withheld[name] = str(answer)
        elif isinstance(answer, Exception):
            log.warning("%s: site %r failed: %s", what, name, _reason(answer))
        else:
            sites[name] = SiteEvaluation(metrics=answer[0], num_examples=answer[1])
    return over_sites(sites, withheld)


def over_sites(
    sites: dict[str, SiteEvaluation], withheld: dict[str, str] | None = None
) -> Evaluation:
    """The federation's figures from each site's: example-weighted, and plain mean.
    Sites that withhold theirs (their policy) are not in them, and are named."""
    pairs = [(s.metrics, s.num_examples) for s in sites.values()]
    return Evaluation(
        metrics=weighted(pairs),
        mean_over_sites=unweighted([s.metrics for s in sites.values()]),
        sites=sites,
        withheld=withheld or {},
    )


def _withheld_notes(hellos: dict[str, SiteHello]) -> list[str]:
    """What each site said it keeps to itself, so the federation's figures are read right."""
    notes = []
    for split in ("validation", "test"):
        keeping = {
            n: h.report.withheld[split] for n, h in hellos.items() if split in h.report.withheld
        }
        for name, why in keeping.items():
            notes.append(
                f"site {name!r} withholds its {split} metrics ({why}): the federation's "
                f"{split} figures cover the other {len(hellos) - len(keeping)} site(s)"
            )
    return notes


def _check_both_classes(experiment: Experiment, hellos: dict[str, SiteHello]) -> None:
    """A federation without one of the classes has nothing to learn; most often the
    outcome's spelling at the sites differs from schema.target.positive."""
    # A suppressed count (None) is one of 1 to minCellCount - 1: the class is there.
    reports = [h.report for h in hellos.values()]
    positives = sum(1 if r.positives is None else r.positives for r in reports)
    negatives = sum(1 if r.negatives is None else r.negatives for r in reports)
    if positives and negatives:
        return
    missing = "positive" if not positives else "negative"
    target = experiment.data_schema.target
    rule = (
        f"positive: {target.positive}"
        if target.positive is not None
        else f"positiveAbove: {target.positive_above}"
        if target.positive_above is not None
        else "values 0/1"
    )
    raise DataError(
        f"no site has a {missing} outcome in column {target.column!r} (schema.target {rule}); "
        "check how the sites spell the outcome, or map their codes with sites[].levels",
        column=target.column,
    )


def _site_round(answer: LocalUpdate | Exception, current: Params, masked: bool) -> SiteRound:
    """``masked``: the update's values went under SecAgg+'s masks; the site checked them."""
    if isinstance(answer, BudgetSpent):
        return SiteRound(status="stopped", reason=str(answer))
    if isinstance(answer, Exception):
        return SiteRound(status="failed", reason=_reason(answer))
    problem = answer.problem if masked else update_problem(answer, current)
    loss = answer.loss if problem is None else None
    status: Literal["ok", "rejected"] = "ok" if problem is None else "rejected"
    return SiteRound(
        status=status,
        num_examples=answer.num_examples,
        train_loss=loss,
        steps=answer.steps,
        reason=problem,
        epsilon=answer.privacy.epsilon if answer.privacy is not None else None,
    )


def _combined(errors: list[Exception]) -> DataError | TrainingError:
    """One error for every site that failed before round 1: a DataError when each is
    about data, else a TrainingError (a site that could not be reached or crashed)."""
    if len(errors) == 1 and isinstance(errors[0], DataError):
        return errors[0]
    first = errors[0]
    message = "\n".join(str(e) for e in errors)
    if not all(isinstance(e, DataError) for e in errors):
        return TrainingError(message)
    return DataError(
        message, site=getattr(first, "site", None), column=getattr(first, "column", None)
    )
