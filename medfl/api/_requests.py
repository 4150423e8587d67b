"""An experiment from a request: its sites named, their data sources from the server.
A request never names a path; a site entry may repeat the server's own data source
(an uploaded experiment.yaml does), nothing else about where data lives."""

from __future__ import annotations

from typing import Any

import yaml

from medfl.api._sites import ServedSite
from medfl.errors import SpecError
from medfl.spec import Experiment, parse_experiment
from medfl.spec._load import _Loader, _unwrap

# What a request may say about a site: its name (and the server's own data source).
SITE_FIELDS = {"name", "data"}
# Parts of a spec that name files, code or images on the server's side: medfl run's,
# never a request's.
SERVER_ONLY = "names a file, code or image on the server's side: not through the API (medfl run)"


def parse_yaml(text: bytes) -> Any:
    """Safe YAML (no tags that build objects), YAML 1.2 booleans as in spec files."""
    try:
        return yaml.load(text.decode("utf-8"), Loader=_Loader)  # a SafeLoader
    except UnicodeDecodeError:
        raise SpecError([("", "the upload is not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError([("", f"not valid YAML{where}")]) from None


def experiment_from(doc: Any, served: dict[str, ServedSite]) -> Experiment:
    spec, prefix = _unwrap(doc, "")
    sites = spec.get("sites")
    where = f"{prefix}.sites" if prefix else "sites"
    if not isinstance(sites, list) or not sites:
        raise SpecError([(where, f"name at least one site; this service serves: {_names(served)}")])
    problems = _server_only(spec, prefix)
    filled = [_site(entry, f"{where}[{i}]", served, problems) for i, entry in enumerate(sites)]
    if problems:
        raise SpecError(problems)
    return parse_experiment({**spec, "sites": filled}, base_dir=None)


def _server_only(spec: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    at = f"{prefix}." if prefix else ""
    given = spec.get("model")
    model: dict[str, Any] = given if isinstance(given, dict) else {}
    found = []
    if model.get("type") == "custom":
        found.append((f"{at}model.type", f"'custom' (an importPath) {SERVER_ONLY}"))
    if model.get("pretrained") is not None:
        found.append((f"{at}model.pretrained", SERVER_ONLY))
    if "runtime" in spec:
        found.append((f"{at}runtime", SERVER_ONLY))
    return found


def _names(served: dict[str, ServedSite]) -> str:
    return ", ".join(served)


def _site(
    entry: Any, where: str, served: dict[str, ServedSite], problems: list[tuple[str, str]]
) -> dict[str, Any]:
    given = {"name": entry} if isinstance(entry, str) else entry
    if not isinstance(given, dict) or not isinstance(given.get("name"), str):
        problems.append((where, "a site's name (a string), or a mapping with 'name'"))
        return {}
    name = given["name"]
    if name not in served:
        problems.append(
            (f"{where}.name", f"unknown site {name!r}; this service serves: {_names(served)}")
        )
        return {}
    for key in sorted(set(given) - SITE_FIELDS):
        problems.append(
            (f"{where}.{key}", "set by the service for its sites; a request names the site only")
        )
    wire = served[name].site.model_dump(mode="json", by_alias=True)
    if "data" in given and given["data"] != _data_as_given(wire["data"], given["data"]):
        problems.append(
            (f"{where}.data", "the service holds each site's data source; name the site only")
        )
    return wire


def _data_as_given(served: dict[str, Any], given: Any) -> dict[str, Any]:
    """The server's data source with only the keys the request wrote (defaults left out)."""
    if not isinstance(given, dict):
        return served
    return {k: served.get(k) for k in given}


def public_spec(experiment: Experiment) -> dict[str, Any]:
    """The spec as a response shows it: each site without its data source."""
    wire = experiment.to_wire()
    for site in wire["sites"]:
        site.pop("data", None)
    return wire
