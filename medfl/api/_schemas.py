"""Request (``*Create``) and response (``*Public``) models, kept apart so that nothing
internal (data paths, the database's columns) leaks into a response."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Api(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Request(_Api):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ExperimentCreate(_Request):
    """An experiment spec as in a YAML file, its sites named (``sites: [cleveland,
    hungary]``, or ``{name: cleveland}``): the service fills in their data sources."""

    spec: dict[str, Any] = Field(
        description="the experiment (camelCase fields as in experiment.yaml); each site by "
        "name, from GET /api/sites",
        json_schema_extra={"example": {"name": "heart", "sites": ["cleveland", "hungary"]}},
    )


class ExperimentPublic(_Api):
    id: str
    name: str
    created_at: datetime
    sites: list[str]
    rounds: int
    model: str
    strategy: str
    privacy: str
    spec: dict[str, Any] = Field(description="the resolved spec; sites without data sources")


class SiteReportPublic(_Api):
    """One site's data report for an experiment, as its policy releases it."""

    site: str
    report: dict[str, Any]


class ValidationPublic(_Api):
    """A valid experiment's site reports (a site's data error is a 422 problem instead)."""

    sites: list[dict[str, Any]] = Field(description="each site's data report, as released")
    skipped: list[str] = Field(description="sites left out, as strategy.minSites allows")
    features: list[str] = Field(description="the model's input features, encoded")


class RunCreate(_Request):
    backend: Literal["fast", "kubernetes"] = Field(
        default="fast",
        description="fast: in this service's process, one run at a time; kubernetes: a "
        "FederatedExperiment for the operator",
    )


class RunPublic(_Api):
    id: str
    experiment_id: str
    experiment_name: str
    backend: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rounds_done: int
    total_rounds: int
    error: str | None
    phase: str | None = Field(description="kubernetes: the FederatedExperiment's phase")
    resumes: int = Field(default=0, description="times resumed from its checkpoint")


class RoundPublic(_Api):
    round: int
    seconds: float
    metrics: dict[str, float | None] = Field(description="validation, all sites")
    sites: dict[str, dict[str, Any]] = Field(description="site -> status and its metrics")


class ArtifactPublic(_Api):
    name: str
    size: int
    media_type: str


class ColumnPublic(_Api):
    name: str
    kind: Literal["numeric", "categorical", "both", "text", "empty"]
    missing: int | None = Field(description="null: under the site's cell minimum")
    mean: float | None = None
    sd: float | None = None
    levels: dict[str, int | None] | None = None


class SitePublic(_Api):
    name: str
    source: str = Field(description="demo, csv or parquet (never the path)")
    rows: int | None = Field(default=None, description="null: under the site's minimum rows")
    columns: list[ColumnPublic] = Field(default_factory=list)
    suppressed: list[str] = Field(default_factory=list)


class SharedColumnPublic(_Api):
    name: str
    numeric: bool
    categorical: bool


class SchemaPublic(_Api):
    sites: list[str]
    columns: list[SharedColumnPublic]


class HealthPublic(_Api):
    status: Literal["ok"] = "ok"
    version: str
