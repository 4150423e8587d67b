"""What a site enforces of its privacy policy, and the ε it spends, for one experiment.

Before any training (its hello) a site refuses an experiment that reads a column its
policy does not allow, that needs secure aggregation, or that would spend more ε than
its ledger has left. During training it stops before the round that would exceed its
budget (the experiment's target, or what its ledger has left) and records every
round's ε in its ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from medfl.errors import BudgetSpent, PrivacyRefusal
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

    # --- before training ---------------------------------------------------

    def check(self, rows: int, steps: int) -> None:
        """Refuse (PrivacyRefusal) what the policy forbids; plan this site's DP."""
        self._check_columns()
        if self.policy.require_secure_aggregation:
            self._refuse("its policy requires secure aggregation, which medfl does not offer yet")
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
        if self.accountant is None:
            assert privacy.delta is not None
            self.accountant = SiteAccountant(privacy.accountant, privacy.delta)
        self._check_budget(self.plan)

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
        if plan.planned_epsilon <= left + _SLACK:
            return
        needed = f"the experiment needs ε = {plan.planned_epsilon:.3f} (δ = {plan.delta:g})"
        having = (
            f"its policy has ε = {left:.3f} left of its lifetime maxEpsilon "
            f"{self.policy.max_epsilon:g}"
        )
        if self.policy.when_budget_short == "refuse":
            self._refuse(f"{needed} at this site and {having}")
        from medfl.privacy._accountant import epsilon_of

        one = [(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)]
        first = epsilon_of(plan.accountant, one, plan.delta)  # this run's first round alone
        if first > left + _SLACK:
            self._refuse(f"{needed} ({first:.3f} for one round) and {having}")

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
