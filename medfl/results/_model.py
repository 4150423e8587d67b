"""The shape of result.json (schemaVersion 1): what every runner returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1
Metrics = dict[str, float | None]


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


BASELINE_LABELS = {
    "local": "local baseline",
    "pooled": "pooled baseline",
    "scratch": "from scratch",
    "pretrained": "pretrained, untrained",
}


class SiteRound(_Out):
    """One site in one round. status: ok, rejected (update not finite), failed (raised)
    or stopped (its privacy budget would be exceeded: it trains no more)."""

    status: Literal["ok", "rejected", "failed", "stopped"]
    num_examples: int = 0
    train_loss: float | None = None
    steps: int = 0
    metrics: Metrics = Field(default_factory=dict)
    validation_examples: int = 0
    reason: str | None = None
    withheld: str | None = None  # why the site kept its validation metrics (its policy)
    epsilon: float | None = None  # with DP: the site's ε after this round (whole experiment)


class RoundRecord(_Out):
    round: int
    metrics: Metrics
    sites: dict[str, SiteRound]
    seconds: float = 0.0


class SiteEvaluation(_Out):
    metrics: Metrics
    num_examples: int


class Evaluation(_Out):
    """Test-split metrics: example-weighted over sites, the plain mean, and per site."""

    metrics: Metrics
    mean_over_sites: Metrics
    sites: dict[str, SiteEvaluation]
    withheld: dict[str, str] = Field(default_factory=dict)  # site -> why (its policy)


class LayerInfo(_Out):
    """One tensor of the model: sent each round, frozen (never trained nor sent) or
    local (kept and trained at each site)."""

    name: str
    shape: list[int]
    role: Literal["sent", "frozen", "local"]


class PretrainedInfo(_Out):
    path: str
    kind: Literal["state-dict", "safetensors", "run"]
    sha256: str
    preprocessing: Literal["source", "federation"]
    loaded: list[str]
    reinitialized: list[str]
    unused: list[str] = Field(default_factory=list)


class ModelInfo(_Out):
    layers: list[LayerInfo]
    values_sent: int  # numbers per model each way each round
    values_total: int
    pretrained: PretrainedInfo | None = None


class SitePrivacyReport(_Out):
    """One site's DP-SGD: its plan (known before round 1) and what it spent so far."""

    mechanism: str
    accountant: str
    epsilon: float  # spent in this experiment so far (all rounds), by the site's accountant
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    steps: int  # DP-SGD steps taken so far
    sample_rate: float
    expected_batch_size: int
    poisson_sampling: bool
    noise_calibrated: bool  # chosen by the site for the experiment's targetEpsilon
    planned_epsilon: float  # after every round of the experiment
    planned_steps: int
    rounds_contributed: int = 0
    stopped: str | None = None  # why it stopped contributing (its budget), if it did
    run: str | None = None  # the site's ledger key for this run: a resume continues it


class PrivacyReport(_Out):
    """result.json's ``privacy``: per site ε (local), or the server's mechanism and its ε
    (central), and what the figures cover."""

    mode: Literal["local", "central"] = "local"
    target_epsilon: float | None = None
    delta: float
    accountant: str
    reproducible_noise: bool
    sites: dict[str, SitePrivacyReport] = Field(default_factory=dict)
    central: dict[str, Any] | None = None  # mode central: the server's mechanism, its ε
    secure_aggregation: bool = False  # SecAgg+: the server saw only the sum of the updates
    repairs: list[str] = Field(default_factory=list)  # layers replaced (privacy.repairModel)
    scope: dict[str, Any] = Field(default_factory=dict)


class PartitionReport(_Out):
    """How the pooled training rows became virtual sites (partition.csv: every site)."""

    type: str
    settings: dict[str, Any] = Field(default_factory=dict)  # the partitioner's spec fields
    seed: int
    pool_rows: int  # the source sites' training rows
    sites: int
    rows: int  # over every site (shards draw with replacement: may exceed poolRows)
    size: dict[str, float]  # min / median / max rows per site
    positive_share: dict[str, float]  # min / median / max share of positives per site
    single_class_sites: int  # sites whose rows are all one class
    notes: list[str] = Field(default_factory=list)  # what a fallback did


class VirtualRound(_Out):
    """One round of the batched engine; each sampled site's figures in virtual_sites.csv."""

    round: int
    sampled: int
    accepted: int
    rejected: int
    train_loss: float | None  # example-weighted mean over the accepted sites
    seconds: float
    stack_bytes: int  # the largest stack's weights, gradients and optimiser state


class SimulationReport(_Out):
    """result.json's ``simulation``: what the batched engine simulated, and its memory."""

    device: str
    sites: int
    sites_per_round: int
    virtual: bool  # False: the experiment's own sites, one stack entry each
    partition: PartitionReport | None = None
    rounds: list[VirtualRound] = Field(default_factory=list)
    memory: dict[str, int] = Field(default_factory=dict)  # bytes: pool, partition, stack, peak
    privacy: dict[str, Any] | None = None  # DP-SGD at every virtual site: plans and ε spread
    files: dict[str, str] = Field(default_factory=dict)  # what -> file in the run folder


class RunResult(_Out):
    schema_version: int = SCHEMA_VERSION
    name: str
    status: Literal["running", "succeeded", "failed"] = "running"
    error: str | None = None
    error_kind: str | None = None  # the error's type (DataError, TrainingError, ...)
    engine: str = "fast"
    rounds: list[RoundRecord] = Field(default_factory=list)
    final: Evaluation | None = None
    baselines: dict[str, Evaluation] = Field(default_factory=dict)
    personalized: Evaluation | None = None  # each site's fine-tuned model on its test split
    model: ModelInfo | None = None
    sites: dict[str, dict[str, Any]] = Field(default_factory=dict)
    excluded_sites: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    privacy: PrivacyReport | None = None
    secure_aggregation: dict[str, Any] | None = None  # SecAgg+: settings, what it protects
    simulation: SimulationReport | None = None  # the batched engine's virtual sites

    def comparisons(self) -> list[tuple[str, Evaluation]]:
        """The federated model, the sites' fine-tuned ones and every baseline, labelled."""
        rows = [
            ("federated", self.final),
            ("personalised", self.personalized),
        ]
        rows += [(BASELINE_LABELS.get(k, k), ev) for k, ev in self.baselines.items()]
        return [(label, ev) for label, ev in rows if ev is not None]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)
