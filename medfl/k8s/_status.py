"""The status of a ``FederatedExperiment``: every field the operator may write.

A real API server silently drops status fields its CRD does not declare, so the
operator writes status only by dumping this model, and the CRD's status schema is
generated from it (``medfl.k8s.crd_manifest``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Running", "Succeeded", "Failed"]
ConditionType = Literal["Valid", "ServerReady", "SitesReady", "Training", "Succeeded", "Failed"]
SiteState = Literal["Pending", "Starting", "Online", "Failed", "Finished"]


class _StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_StatusModel):
    """The standard ``metav1.Condition`` shape (its field rules included)."""

    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: datetime
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    message: str = Field(max_length=32768, description="may be empty")


class SiteStatus(_StatusModel):
    state: SiteState = Field(
        default="Pending", description="Online: connected to the server, as Flower sees it"
    )
    message: str | None = Field(default=None, description="why a site is not online")
    restarts: int = Field(default=0, ge=0, description="times the site's pod was replaced")


class PrivacySpent(_StatusModel):
    epsilon: float = Field(ge=0)
    delta: float = Field(ge=0, le=1)


class ResultsLocation(_StatusModel):
    claim_name: str = Field(description="the PersistentVolumeClaim holding the run folder")
    path: str = Field(description="the run folder inside it, with result.json")


class ExperimentStatus(_StatusModel):
    """What the operator reports about one experiment."""

    phase: Phase = "Pending"
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="the spec generation this status describes"
    )
    current_round: int = Field(default=0, ge=0)
    total_rounds: int | None = Field(default=None, ge=1)
    sites: dict[str, SiteStatus] = Field(default_factory=dict, description="per site, by name")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="the latest round's aggregated validation metrics"
    )
    privacy_spent: dict[str, PrivacySpent] = Field(
        default_factory=dict, description="per site, with differential privacy"
    )
    start_time: datetime | None = None
    completion_time: datetime | None = None
    results: ResultsLocation | None = None

    @computed_field(description="currentRound/totalRounds, for kubectl get")  # type: ignore[prop-decorator]
    @property
    def round(self) -> str:
        return f"{self.current_round}/{self.total_rounds or '?'}"

    @computed_field(description="online sites/all sites, for kubectl get")  # type: ignore[prop-decorator]
    @property
    def sites_ready(self) -> str:
        online = sum(s.state == "Online" for s in self.sites.values())
        return f"{online}/{len(self.sites)}"

    def to_wire(self) -> dict[str, object]:
        """The status as the operator patches it (camelCase, computed columns included)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
