"""What the chart tells the operator: the ConfigMap it renders, as a typed model.

The chart writes ``config.yaml`` from its values; the operator (a later issue) reads it
with ``OperatorConfig.from_yaml`` and uses it for every experiment: the runtime image
for pods whose experiment names none, the GPU node pool, the results volume.
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import Field

from medfl.spec._models import DNS_LABEL, SpecModel, Toleration, default_runtime_image

CONFIG_FILE = "config.yaml"  # the key in the ConfigMap, and the file's name when mounted


class RuntimeDefaults(SpecModel):
    image: str = Field(default_factory=default_runtime_image, min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class GpuPool(SpecModel):
    """Where pods that request GPUs (sites with placement.gpus, tuning trials) go."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class ResultsVolume(SpecModel):
    claim_name: str = Field(pattern=DNS_LABEL, max_length=253)


class SitePolicySource(SpecModel):
    """Where a site's own policy lives on the cluster: set by whoever installs the chart
    (the hospitals' side), never by an experiment. The site's pod reads it read-only."""

    config_map: str = Field(
        pattern=DNS_LABEL, max_length=253, description="in the experiment's namespace"
    )
    key: str = Field(default="policy.yaml", min_length=1, description="the file in it")
    ledger_claim: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        max_length=253,
        description="a PersistentVolumeClaim for the policy's privacy ledger, mounted "
        "writable at /var/lib/medfl/ledger (the ledger must be a file there)",
    )


class RayTarget(SpecModel):
    """A KubeRay RayCluster the operator submits simulation searches to (tuning.runOn:
    ray), as RayJobs in the experiment's namespace."""

    cluster_name: str = Field(pattern=DNS_LABEL, max_length=63)


class OperatorConfig(SpecModel):
    runtime: RuntimeDefaults = Field(default_factory=RuntimeDefaults)
    gpu_pool: GpuPool = Field(default_factory=GpuPool)
    results: ResultsVolume | None = None
    watch_namespace: str | None = Field(default=None, description="none: every namespace")
    ray: RayTarget | None = Field(default=None, description="none: no search runs on Ray")
    site_policies: dict[str, SitePolicySource] = Field(
        default_factory=dict, description="by site name; a site not named uses default limits"
    )

    @classmethod
    def from_yaml(cls, text: str) -> OperatorConfig:
        return cls.model_validate(yaml.safe_load(text) or {})
