"""What runs at a site: its data stays here; only summaries, parameters and metrics leave."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from torch import nn

from medfl._seeds import derive_seed
from medfl.data import (
    Preprocessor,
    SiteReport,
    SiteSummary,
    SiteTable,
    predefined_split,
    prepare_site,
    stratified_split,
    summarize,
)
from medfl.data._disclosure import released_report, released_summary, withheld_split
from medfl.errors import DisclosureRefusal, EmptySiteError, TrainingError
from medfl.models import ModelParts, build_model, model_parts
from medfl.privacy import PrivacyResume, SitePrivacy
from medfl.spec import Experiment, FedAvg
from medfl.spec._policy import SitePolicy
from medfl.training._local import (
    LocalData,
    LocalUpdate,
    Params,
    evaluate,
    local_steps,
    train_local,
)
from medfl.training._metrics import Metrics

if TYPE_CHECKING:
    from medfl.privacy._plan import PrivacyPlan

SplitName = Literal["train", "validation", "test"]


@dataclass
class SiteHello:
    """A site's first answer: the aggregates for preprocessing and its data report."""

    summary: SiteSummary
    report: SiteReport
    privacy: PrivacyPlan | None = None  # with privacy.mode local: what this site will spend
    privacy_run: str | None = None  # with it: this run's key in the site's ledger (for resume)


class SiteWorker:
    """One site's data and the local operations the server may ask for, under the
    disclosure limits of its own policy (default limits without one)."""

    def __init__(
        self,
        experiment: Experiment,
        name: str,
        table: SiteTable | None = None,
        policy: SitePolicy | None = None,
    ) -> None:
        self.experiment = experiment
        self.name = name
        policy = policy or SitePolicy()
        self.limits = policy.disclosure
        self.privacy = SitePrivacy(experiment, name, policy.privacy)
        self._withheld: dict[str, str] = {}  # split -> why its metrics stay here
        self._table = table
        self._frames: dict[SplitName, pd.DataFrame] = {}
        self._labels: dict[SplitName, np.ndarray] = {}
        self._data: dict[SplitName, LocalData] = {}
        self._model: nn.Module | None = None
        self._parts: ModelParts | None = None
        self._held: list[nn.Module] = []  # frozen normalisation layers: eval mode in training
        self._state: Params = []  # the whole model as this site holds it: frozen + its own layers

    def _load(self) -> SiteTable:
        if self._table is None:
            site = next(s for s in self.experiment.sites if s.name == self.name)
            column = self.experiment.evaluation.split.column
            self._table = prepare_site(site, self.experiment.data_schema, column)
        return self._table

    def hello(self, resume: PrivacyResume | None = None) -> SiteHello:
        """``resume``: this site's DP as the server knew it, when the run is resumed."""
        table = self._load()
        if table.split_labels is not None:
            split = predefined_split(table.split_labels)
        else:
            spec = self.experiment.evaluation.split
            seed = self.experiment.training.seed if spec.seed is None else spec.seed
            split = stratified_split(table.y, spec, seed, self.name)
        for part in ("train", "validation", "test"):
            idx = getattr(split, part)
            self._frames[part] = table.features.iloc[idx].reset_index(drop=True)
            self._labels[part] = table.y[idx]
        if len(self._labels["train"]) == 0:
            raise EmptySiteError(
                f"site {self.name!r}: no training rows ({table.report.rows_read} read, "
                f"{table.report.rows_without_outcome} without outcome, "
                f"{table.report.rows_dropped_missing} dropped for missing values)",
                site=self.name,
            )
        self._check_policy(table.report.rows)
        self._check_privacy(resume)
        schema = self.experiment.data_schema
        least = self.limits.min_cell_count
        summary = summarize(self.name, self._frames["train"], table.features, schema)
        report = released_report(table.report, self.limits)
        scored: tuple[SplitName, ...] = ("validation", "test")
        for part in scored:
            if (why := withheld_split(self._labels[part], least)) is not None:
                report.withheld[part] = why
        self._withheld = report.withheld
        plan = self.privacy.plan
        run = self.privacy.run if plan is not None else None
        return SiteHello(released_summary(summary, least), report, plan, run)

    def _check_policy(self, rows: int) -> None:
        """Take part only where this site's policy allows (before anything is released)."""
        limits, sites = self.limits, len(self.experiment.sites)
        if sites < limits.min_sites:
            self._refuse(
                f"the experiment lists {sites} site(s), its policy needs {limits.min_sites}"
            )
        if rows < limits.min_rows:
            self._refuse(f"fewer usable rows than its policy's minimum of {limits.min_rows}")

    def _check_privacy(self, resume: PrivacyResume | None = None) -> None:
        """The privacy policy's refusals (PrivacyRefusal), and this site's DP plan."""
        rows = len(self._labels["train"])
        self.privacy.check(rows, local_steps(rows, self.experiment.training), resume)

    def _refuse(self, why: str) -> None:
        raise DisclosureRefusal(f"site {self.name!r} takes no part: {why}", site=self.name)

    def _check_release(self, split: SplitName) -> None:
        if split in self._withheld:
            raise DisclosureRefusal(
                f"site {self.name!r} withholds its {split} metrics: {self._withheld[split]}",
                site=self.name,
            )

    def configure(self, preprocessor: Preprocessor, base: Params) -> None:
        """The input encoding and the whole round-0 model (frozen and local layers
        arrive once, here; rounds carry only the shared ones)."""
        for part, frame in self._frames.items():
            self._data[part] = LocalData.from_numpy(
                preprocessor.transform(frame), self._labels[part]
            )
        spec = self.experiment
        width = len(preprocessor.feature_names)
        self._model = build_model(spec.model, width, repair=spec.privacy.repairs)
        self._parts = model_parts(self._model, spec.model, spec.personalization)
        self._held = self._parts.apply_freeze(self._model)
        self._state = list(base)

    def _whole(self, shared: Params) -> Params:
        assert self._parts is not None, "configure() before fit() or evaluate()"
        return self._parts.merge(self._state, shared)

    def fit(self, server_round: int, params: Params) -> LocalUpdate:
        """Train from the global (shared) ``params``; this site's own layers carry on
        from its last round and stay here."""
        assert self._model is not None and self._parts is not None
        seed = derive_seed(self.experiment.training.seed, self.name, server_round)
        spec = self.experiment
        data = self._data["train"]
        if spec.privacy.local:
            update = self._fit_private(server_round, self._whole(params), seed)
        else:
            update = train_local(
                self._model, self._whole(params), data, spec.training, spec.strategy, seed,
                self._held,
            )  # fmt: skip
        if update.problem is None:
            self._state = self._parts.with_local(self._state, self._parts.local_of(update.params))
        update.params = self._parts.shared(update.params)
        return update

    def _fit_private(self, server_round: int, whole: Params, seed: int) -> LocalUpdate:
        """DP-SGD, unless this round would exceed the site's budget (BudgetSpent); the
        round's ε is in the ledger before the update leaves."""
        from medfl.training._private import train_private

        assert self._model is not None
        self.privacy.before_round(server_round)
        plan, accountant = self.privacy.plan, self.privacy.accountant
        assert plan is not None and accountant is not None
        spec = self.experiment
        update = train_private(
            self._model, whole, self._data["train"], spec.training, spec.strategy, seed,
            plan, accountant, self._held, spec.privacy.reproducible_noise,
        )  # fmt: skip
        update.privacy = self.privacy.after_round()
        return update

    def privacy_state(self) -> dict[str, Any]:
        """This site's accountant and ledger key: what its process keeps between rounds."""
        return self.privacy.state()

    def load_privacy_state(self, state: dict[str, Any]) -> None:
        self.privacy.load(state)

    def evaluate(self, params: Params, split: SplitName) -> tuple[Metrics, int]:
        assert self._model is not None, "configure() before evaluate()"
        self._check_release(split)
        data = self._data[split]
        threshold = self.experiment.evaluation.threshold
        return evaluate(self._model, self._whole(params), data, threshold), len(data)

    def personalize(self, params: Params) -> tuple[Metrics, int]:
        """Fine-tune the global model on this site's training split; its metrics on this
        site's test split. The fine-tuned weights stay here."""
        assert self._model is not None
        self._check_release("test")
        personal = self.experiment.personalization
        training = self.experiment.training
        cfg = training.model_copy(
            update={
                "local_epochs": personal.fine_tune_epochs,
                "local_steps": personal.fine_tune_steps,
                "learning_rate": personal.fine_tune_learning_rate or training.learning_rate,
            }
        )
        seed = derive_seed(training.seed, self.name, "personalize")
        data = self._data["train"]
        update = train_local(
            self._model, self._whole(params), data, cfg, FedAvg(), seed, self._held
        )
        if update.problem is not None:
            raise TrainingError(f"site {self.name!r}: fine-tuning stopped: {update.problem}")
        data = self._data["test"]
        threshold = self.experiment.evaluation.threshold
        return evaluate(self._model, update.params, data, threshold), len(data)

    def local_params(self) -> Params:
        """This site's own layers (personalisation): what its process must keep between rounds."""
        assert self._parts is not None
        return self._parts.local_of(self._state)

    def load_local_params(self, local: Params) -> None:
        assert self._parts is not None
        self._state = self._parts.with_local(self._state, local)

    @property
    def keeps_local(self) -> bool:
        return bool(self._parts and self._parts.local)

    @classmethod
    def from_splits(
        cls,
        experiment: Experiment,
        name: str,
        splits: dict[SplitName, tuple[pd.DataFrame, np.ndarray]],
    ) -> SiteWorker:
        """A worker over rows already split (the in-process pooled baseline)."""
        worker = cls(experiment, name)
        for part, (frame, labels) in splits.items():
            worker._frames[part] = frame
            worker._labels[part] = labels
        worker._check_privacy()
        return worker

    def split_tables(self) -> dict[SplitName, tuple[pd.DataFrame, np.ndarray]]:
        """This site's split rows; only the in-process pooled baseline (and the batched
        engine's pool of virtual sites) read them."""
        return {p: (self._frames[p], self._labels[p]) for p in self._frames}

    def split_data(self, split: SplitName) -> LocalData:
        """One split as the model's inputs, after configure() (the batched engine's pool)."""
        return self._data[split]
