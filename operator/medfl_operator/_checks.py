"""What a spec needs on Kubernetes beyond medfl's own rules: a site reads its files
inside its pod, where only absolute paths on its mounted volume mean anything."""

from __future__ import annotations

from pathlib import PurePosixPath

from medfl.errors import SpecError
from medfl.spec import CsvSource, Experiment, ParquetSource, Site


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
