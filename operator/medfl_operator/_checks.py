"""What a spec needs on Kubernetes beyond medfl's own rules: a site reads its files
inside its pod, where only absolute paths on its mounted volume mean anything; a site
with its own policy (the chart's sitePolicies) needs it readable and its ledger kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from medfl.errors import PolicyError, SpecError
from medfl.k8s._config import OperatorConfig, SitePolicySource
from medfl.spec import CsvSource, Experiment, ParquetSource, Site
from medfl.spec._policy import parse_policy

LEDGER_DIR = "/var/lib/medfl/ledger"  # where the site pod mounts its ledgerClaim


def _path_problem(site: Site) -> str | None:
    if not isinstance(site.data, CsvSource | ParquetSource):
        return None  # the built-in demo source needs no file
    path = PurePosixPath(site.data.path)
    if not path.is_absolute():
        return f"on Kubernetes a data path must be absolute (the pod's view), got {path}"
    volume = site.placement.volume
    if volume is not None and not path.is_relative_to(volume.mount_path):
        return f"{path} is not on the site's volume, mounted at {volume.mount_path}"
    return None


def check_for_kubernetes(experiment: Experiment, source: str) -> None:
    """Raise a SpecError naming every site whose data its pod could not find, and
    virtual sites (a simulation: there are no pods to run them)."""
    problems = [
        (f"spec.sites[{i}].data.path", problem)
        for i, site in enumerate(experiment.sites)
        if (problem := _path_problem(site)) is not None
    ]
    if experiment.simulation is not None and experiment.simulation.virtual_sites is not None:
        problems.append(
            (
                "spec.simulation.virtualSites",
                "virtual sites are simulated by the batched engine (medfl run --engine "
                "batched), not deployed as pods",
            )
        )
    if problems:
        raise SpecError(problems, source)


ReadConfigMap = Callable[[str], dict[str, Any] | None]  # name -> the ConfigMap, or None


def _policy_problem(site: str, source: SitePolicySource, read: ReadConfigMap) -> str | None:
    """Why the site's pod could not start with its policy: said before any child is made,
    instead of a pod stuck in ContainerCreating or a site refusing mid-run."""
    found = read(source.config_map)
    if found is None:
        return f"its policy ConfigMap {source.config_map} is not in this namespace"
    text = (found.get("data") or {}).get(source.key)
    if text is None:
        return f"its policy ConfigMap {source.config_map} has no key {source.key}"
    try:
        policy = parse_policy(text, f"ConfigMap {source.config_map}")
    except PolicyError as exc:
        return str(exc).replace("\n", " ")
    ledger = policy.privacy.ledger
    if ledger is None:
        return None
    if source.ledger_claim is None:
        return "its policy keeps a ledger, but sitePolicies gives no ledgerClaim to keep it on"
    if not PurePosixPath(ledger).is_relative_to(LEDGER_DIR):
        return f"its policy's ledger {ledger} must be a file in {LEDGER_DIR} (the ledgerClaim)"
    return None


def check_site_policies(
    experiment: Experiment, sources: dict[str, SitePolicySource], read: ReadConfigMap, where: str
) -> None:
    """Raise a PolicyError naming each site whose own policy (the chart's sitePolicies)
    its pod could not use."""
    problems = [
        (f"site {site.name}", problem)
        for site in experiment.sites
        if site.name in sources
        and (problem := _policy_problem(site.name, sources[site.name], read)) is not None
    ]
    if problems:
        raise PolicyError(problems, where)


def check_ray(experiment: Experiment, config: OperatorConfig, source: str) -> None:
    """A search on Ray needs the chart's Ray cluster."""
    tuning = experiment.tuning
    if tuning is not None and tuning.run_on == "ray" and config.ray is None:
        problem = (
            "ray needs the chart's ray.clusterName (a KubeRay RayCluster in this namespace); "
            "or federation: every trial a run on this experiment's own sites"
        )
        raise SpecError([("spec.tuning.runOn", problem)], source)
