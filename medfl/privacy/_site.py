"""What a site enforces of its privacy policy, and the ε it spends, for one experiment.

Before any training (its hello) a site refuses an experiment that reads a column its
policy does not allow, that needs secure aggregation, or that would spend more ε than
its ledger has left. During training it stops before the round that would exceed its
budget (the experiment's target, or what its ledger has left) and records every
round's ε in its ledger.

A resumed run continues the same accounting: the server sends back what it knew of the
site's run (its ledger key, its steps); the site checks its plan is the one the run
began with, restarts its accountant from the steps already taken (its ledger's figure
when larger: a round it trained that the server never saw still counts) and goes on
writing the same ledger entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from medfl.errors import BudgetSpent, DataError, PrivacyRefusal
from medfl.privacy._ledger import Ledger
from medfl.spec import Experiment
from medfl.spec._policy import PrivacyPolicy

if TYPE_CHECKING:  # opacus loads only where DP is on
    from medfl.privacy._accountant import SiteAccountant
    from medfl.privacy._plan import PrivacyPlan

_SLACK = 1e-9  # float noise in ε comparisons, never a real allowance


@dataclass
class PrivacySpent:
    """A site's ε after a round, as its accountant computes it."""

    epsilon: float
    steps: int  # every DP step this site took in this experiment

    def to_dict(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacySpent:
        return cls(float(d["epsilon"]), int(d["steps"]))


@dataclass(frozen=True)
class PrivacyResume:
    """What the server knew of a site's DP when the run stopped (result.json's
    ``privacy.sites``), sent back to the site in its hello when the run resumes."""

    run: str  # the site's ledger key for this run, from its first hello
    steps: int  # DP steps the server saw the site take
    epsilon: float
    noise_multiplier: float  # the plan the run began with: the site must have the same
    sample_rate: float
    rounds_done: int  # rounds the run finished before it stopped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacyResume:
        return cls(
            run=str(d["run"]),
            steps=int(d["steps"]),
            epsilon=float(d["epsilon"]),
            noise_multiplier=float(d["noise_multiplier"]),
            sample_rate=float(d["sample_rate"]),
            rounds_done=int(d["rounds_done"]),
        )


def used_columns(experiment: Experiment, site: str) -> list[str]:
    """The columns of this site's own file the experiment reads (its names for them)."""
    spec = next(s for s in experiment.sites if s.name == site)
    schema = experiment.data_schema
    names = [schema.target.column, *schema.features]
    if experiment.evaluation.split.column:
        names.append(experiment.evaluation.split.column)
    return [spec.columns.get(n, n) for n in names]


class SitePrivacy:
    """One site's privacy bookkeeping for one experiment."""

    def __init__(self, experiment: Experiment, site: str, policy: PrivacyPolicy) -> None:
        self.experiment = experiment
        self.site = site
        self.policy = policy
        self.run = uuid4().hex  # this run's key in the ledger
        self.ledger = Ledger(policy.ledger, site) if policy.ledger else None
        self.plan: PrivacyPlan | None = None
        self.accountant: SiteAccountant | None = None
        self.resumed: PrivacyResume | None = None  # the run this hello continues, if any

    def check_plain_update(self) -> None:
        """A server that asks for a plain update from a site whose policy wants only
        masked ones is refused, whatever the experiment it sent claimed."""
        if self.policy.require_secure_aggregation:
            self._refuse(
                "its policy requires secure aggregation (requireSecureAggregation), and the "
                "server asked for a plain update"
            )

    # --- before training ---------------------------------------------------

    def check(self, rows: int, steps: int, resume: PrivacyResume | None = None) -> None:
        """Refuse (PrivacyRefusal) what the policy forbids; plan this site's DP; with
        ``resume``, continue the accounting of the run it names."""
        self._check_columns()
        if self.policy.require_secure_aggregation and not self.experiment.privacy.secure:
            self._refuse(
                "its policy requires secure aggregation (requireSecureAggregation), and this "
                "experiment sends plain updates (privacy.secureAggregation.enabled is false)"
            )
        privacy = self.experiment.privacy
        if not privacy.local:
            if self.policy.max_epsilon is not None:
                self._refuse(
                    f"its policy caps its lifetime ε at {self.policy.max_epsilon:g}, and this "
                    "experiment trains without sample-level differential privacy at the site "
                    f"(privacy.mode {privacy.mode!r}; its ledger counts mode 'local')"
                )
            return
        from medfl.privacy._accountant import SiteAccountant
        from medfl.privacy._plan import plan_for

        training = self.experiment.training
        self.plan = plan_for(privacy, rows, training.batch_size, steps, training.rounds)
        if self.accountant is None or resume is not None:
            assert privacy.delta is not None
            self.accountant = SiteAccountant(privacy.accountant, privacy.delta)
        if resume is not None:
            self._resume(resume, self.plan, rows)
        self._check_budget(self.plan)

    def _resume(self, resume: PrivacyResume, plan: PrivacyPlan, rows: int) -> None:
        """The accountant as the run left it: the same plan, the steps already taken."""
        was = (resume.noise_multiplier, resume.sample_rate)
        now = (plan.noise_multiplier, plan.sample_rate)
        if was != now:
            raise DataError(
                f"site {self.site!r}: cannot resume this run: its DP plan differs from the one "
                f"the run began with (noise multiplier {was[0]!r} then, {now[0]!r} now; sample "
                f"rate {was[1]!r} then, {now[1]!r} now; {rows} training rows now): its data "
                "or the experiment changed since (more rounds change a noise calibrated for "
                "targetEpsilon); start a new run",
                site=self.site,
            )
        self.run, self.resumed = resume.run, resume
        steps = max(resume.steps, self._ledger_steps(resume.run))
        assert self.accountant is not None
        self.accountant.resume(plan.noise_multiplier, plan.sample_rate, steps)

    def _ledger_steps(self, run: str) -> int:
        """The steps this site's own ledger counts for ``run`` (it trusts itself first)."""
        entry = self.ledger.entry(run) if self.ledger is not None else None
        return int(entry["steps"]) if entry is not None else 0

    def _check_columns(self) -> None:
        allowed = self.policy.allowed_columns
        if allowed is None:
            return
        for column in used_columns(self.experiment, self.site):
            if column not in allowed:
                self._refuse(
                    f"the experiment reads column {column!r}, which its policy does not "
                    f"allow (allowedColumns: {', '.join(allowed)})"
                )

    def _check_budget(self, plan: PrivacyPlan) -> None:
        if self.policy.max_epsilon is None:
            return
        left = self._left()
        planned = self._planned(plan)
        if planned <= left + _SLACK:
            return
        needed = f"the experiment needs ε = {planned:.3f} (δ = {plan.delta:g})"
        having = (
            f"its policy has ε = {left:.3f} left of its lifetime maxEpsilon "
            f"{self.policy.max_epsilon:g}"
        )
        if self.policy.when_budget_short == "refuse":
            self._refuse(f"{needed} at this site and {having}")
        if self.resumed is not None:
            return  # it took part already: it stops (BudgetSpent) before a round that exceeds
        from medfl.privacy._accountant import epsilon_of

        one = [(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)]
        first = epsilon_of(plan.accountant, one, plan.delta)  # this run's first round alone
        if first > left + _SLACK:
            self._refuse(f"{needed} ({first:.3f} for one round) and {having}")

    def _planned(self, plan: PrivacyPlan) -> float:
        """ε after the last round: the plan's; resumed, the steps taken and those left."""
        if self.resumed is None:
            return plan.planned_epsilon
        assert self.accountant is not None
        rounds_left = max(plan.rounds - self.resumed.rounds_done, 0)
        return self.accountant.epsilon_after(
            plan.noise_multiplier, plan.sample_rate, rounds_left * plan.steps_per_round
        )

    def _left(self) -> float:
        assert self.policy.max_epsilon is not None and self.ledger is not None
        return self.policy.max_epsilon - self.ledger.spent(excluding=self.run)

    def _refuse(self, why: str) -> None:
        raise PrivacyRefusal(f"site {self.site!r} takes no part: {why}", site=self.site)

    # --- rounds --------------------------------------------------------------

    def budget(self) -> tuple[float, str] | None:
        """The most ε this site may reach in this experiment, and where the limit comes from."""
        limits = []
        target = self.experiment.privacy.target_epsilon
        if target is not None:
            limits.append((target, f"the experiment's targetEpsilon {target:g}"))
        if self.policy.max_epsilon is not None:
            cap = self.policy.max_epsilon
            limits.append((self._left(), f"what its ledger has left of maxEpsilon {cap:g}"))
        return min(limits) if limits else None

    def before_round(self, server_round: int) -> None:
        """Stop (BudgetSpent) before a round whose steps would exceed the budget."""
        plan, accountant = self.plan, self.accountant
        assert plan is not None and accountant is not None
        limit = self.budget()
        if limit is None:
            return
        after = accountant.epsilon_after(
            plan.noise_multiplier, plan.sample_rate, plan.steps_per_round
        )
        if after > limit[0] + _SLACK:
            raise BudgetSpent(
                f"site {self.site!r} stops contributing at round {server_round}: that round "
                f"would bring its ε from {accountant.epsilon():.3f} to {after:.3f}, over "
                f"{limit[0]:.3f} ({limit[1]})",
                site=self.site,
            )

    def after_round(self) -> PrivacySpent:
        """This run's ε so far, written to the ledger before the update leaves the site."""
        assert self.accountant is not None and self.plan is not None
        spent = PrivacySpent(self.accountant.epsilon(), self.accountant.steps)
        if self.ledger is not None:
            self.ledger.record(
                self.run,
                experiment=self.experiment.name,
                kind="training",
                epsilon=spent.epsilon,
                delta=self.plan.delta,
                accountant=self.plan.accountant,
                steps=spent.steps,
            )
        return spent

    # --- between processes (Flower's node state) -------------------------------

    def state(self) -> dict[str, Any]:
        accountant = self.accountant.state() if self.accountant is not None else None
        return {"run": self.run, "accountant": accountant}

    def load(self, state: dict[str, Any]) -> None:
        self.run = str(state["run"])
        if state["accountant"] is not None:
            from medfl.privacy._accountant import SiteAccountant

            privacy = self.experiment.privacy
            assert privacy.delta is not None
            self.accountant = SiteAccountant(privacy.accountant, privacy.delta)
            self.accountant.load(state["accountant"])
