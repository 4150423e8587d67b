"""The ``tuning`` section: a hyperparameter search, each trial a federated run.

Parameters are named by their path in the spec as YAML spells it
(``training.learningRate``, ``strategy.mu``, ``model.hidden``); distributions as
Optuna names them (float, int, categorical).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medfl.spec._base import SpecModel

HIGHER_IS_BETTER = ("accuracy", "auc", "sensitivity", "specificity", "f1")
TuningMetric = Literal["loss", "accuracy", "auc", "sensitivity", "specificity", "f1"]


class Param(SpecModel):
    """One searched parameter: ``float`` or ``int`` over [low, high] (log scale or a
    step), or ``categorical`` over its choices. One model rather than three, so the
    Kubernetes schema generated from it stays structural."""

    type: Literal["float", "int", "categorical"]
    low: float | None = Field(default=None, description="float and int: the lowest value")
    high: float | None = Field(default=None, description="float and int: the highest value")
    log: bool = Field(default=False, description="sample on a log scale (low > 0)")
    step: float | None = Field(default=None, gt=0, description="a grid of this step")
    choices: list[Any] | None = Field(
        default=None, min_length=2, description="categorical: values as the spec spells them"
    )

    @model_validator(mode="after")
    def _complete(self) -> Param:
        if self.type == "categorical":
            if self.choices is None or self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices' (and no low/high)")
            return self
        if self.low is None or self.high is None or self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes 'low' and 'high' (no choices)")
        if not self.low < self.high:
            raise ValueError(f"'low' ({self.low:g}) must be below 'high' ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs 'low' > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("give 'log' or 'step', not both")
        if self.type == "int" and not all(
            float(v).is_integer() for v in (self.low, self.high, self.step or 1)
        ):
            raise ValueError("an int parameter's 'low', 'high' and 'step' are whole numbers")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        assert self.low is not None and self.high is not None
        return self.low, self.high


class TrialResources(SpecModel):
    cpus: float = Field(default=1.0, gt=0, description="CPUs per trial")
    gpus: float = Field(default=0.0, ge=0, description="GPUs (or a fraction) per trial")


class Tuning(SpecModel):
    """A search: Optuna's sampler inside Ray Tune; trials scored on validation only."""

    space: dict[str, Param] = Field(
        min_length=1, description="spec path (as in YAML) -> its distribution"
    )
    metric: TuningMetric = Field(
        default="auc", description="the federation's validation metric a trial is scored by"
    )
    mode: Literal["max", "min"] | None = Field(
        default=None, description="default: min for loss, max for the others"
    )
    trials: int = Field(default=20, ge=1, le=10_000)
    concurrency: int | None = Field(
        default=None, ge=1, description="trials at once; default: as many as the CPUs allow"
    )
    scheduler: Literal["asha", "none"] = Field(
        default="asha", description="asha: stop poor trials early from their per-round scores"
    )
    grace_period: int = Field(default=3, ge=1, description="ASHA: rounds before any stop")
    reduction_factor: int = Field(default=2, ge=2, description="ASHA: keep 1 in this many")
    trial_timeout_seconds: float = Field(
        default=300.0, gt=0, description="a trial still running after this stops, as failed"
    )
    time_budget_seconds: float | None = Field(
        default=None, gt=0, description="the whole search stops after this"
    )
    resources: TrialResources = Field(default_factory=TrialResources)
    seed: int = Field(default=0, description="Optuna's sampler seed")
    run_on: Literal["federation", "ray"] = Field(
        default="federation",
        description="on Kubernetes: federation: every trial a run on the experiment's own "
        "site pods (no row moves); ray: the search as a KubeRay RayJob on the chart's Ray "
        "cluster, each trial trained there, for data that cluster may hold (public, the "
        "demo's). Elsewhere medfl tune's flags decide",
    )

    def report_rounds(self, rounds: int) -> set[int]:
        """The rounds whose score is reported: ASHA's rungs (it decides only there) and
        the last. Each report costs Ray Tune's bookkeeping; the others would buy nothing."""
        out, rung = {rounds}, self.grace_period
        while self.scheduler == "asha" and rung < rounds:
            out.add(rung)
            rung *= self.reduction_factor
        return out

    @property
    def direction(self) -> Literal["max", "min"]:
        if self.mode is not None:
            return self.mode
        return "max" if self.metric in HIGHER_IS_BETTER else "min"
