"""Loading a spec from YAML: a bare spec or a whole FederatedExperiment manifest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medfl.errors import SpecError
from medfl.spec._models import DNS_LABEL, IMPORT_PATH, CsvSource, Experiment, ParquetSource

API_VERSION = "medfl.io/v1alpha1"
KIND = "FederatedExperiment"

# Tags of discriminated unions: pydantic puts them in error locations; users never wrote them.
_UNION_TAGS = {
    "csv", "parquet", "demo", "logistic", "mlp", "custom",
    "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad",
}  # fmt: skip


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes/no/on/off as
    booleans, which would turn ``positive: [yes]`` into ``True`` and match no row."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

_PATTERN_MESSAGES = {
    DNS_LABEL: "use lower-case letters, digits and '-', starting and ending with a letter or digit",
    IMPORT_PATH: "expected 'package.module:ClassName'",
}
_MESSAGES = {"extra_forbidden": "unknown field", "missing": "required field is missing"}


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _UNION_TAGS and not str(part).startswith("function-"):
            out += f".{part}" if out else str(part)
    return out


def _problems(err: ValidationError, prefix: str) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        if e["type"] == "union_tag_not_found":  # e.g. `strategy: {minSites: 2}` without a name
            loc += (str(e["ctx"]["discriminator"]).strip("'"),)
            e = {**e, "type": "missing"}
        msg = _MESSAGES.get(e["type"], e["msg"]).removeprefix("Value error, ")
        if e["type"] == "string_pattern_mismatch":
            msg = _PATTERN_MESSAGES.get(e["ctx"]["pattern"], msg)
        problems.append((_path(prefix, loc), msg))
    return problems


def parse_experiment(doc: Any, source: str = "", base_dir: Path | None = None) -> Experiment:
    """Validate a parsed document (bare spec or manifest) into an Experiment.

    Relative data and weights paths are resolved against ``base_dir`` (the YAML file's folder).
    """
    spec, prefix = _unwrap(doc, source)
    try:
        experiment = Experiment.model_validate(spec)
    except ValidationError as err:
        raise SpecError(_problems(err, prefix), source) from None
    return resolve_paths(experiment, base_dir) if base_dir else experiment


def _unwrap(doc: Any, source: str) -> tuple[dict[str, Any], str]:
    if not isinstance(doc, dict):
        raise SpecError([("", "expected a mapping at the top level")], source)
    if "kind" not in doc and "apiVersion" not in doc:
        return doc, ""
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(("apiVersion", f"must be {API_VERSION!r}, got {doc.get('apiVersion')!r}"))
    if doc.get("kind") != KIND:
        problems.append(("kind", f"must be {KIND!r}, got {doc.get('kind')!r}"))
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        problems.append(("spec", "required mapping is missing"))
    if problems:
        raise SpecError(problems, source)
    assert isinstance(spec, dict)
    name = (doc.get("metadata") or {}).get("name")
    if name and "name" not in spec:
        spec = {"name": name, **spec}
    return spec, "spec"


def resolve_paths(experiment: Experiment, base_dir: Path) -> Experiment:
    """The experiment with relative CSV / Parquet paths and the pretrained weights' path
    made absolute against ``base_dir``."""
    model = experiment.model
    pretrained = model.pretrained
    if pretrained is not None and not Path(pretrained.path).is_absolute():
        where = str((base_dir / pretrained.path).resolve())
        model = model.model_copy(
            update={"pretrained": pretrained.model_copy(update={"path": where})}
        )
    sites = []
    for site in experiment.sites:
        data = site.data
        if isinstance(data, CsvSource | ParquetSource) and not Path(data.path).is_absolute():
            data = data.model_copy(update={"path": str((base_dir / data.path).resolve())})
        sites.append(site.model_copy(update={"data": data}))
    return experiment.model_copy(update={"sites": sites, "model": model})


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([("", f"cannot read the file: {exc.strerror}")], str(path)) from None
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError([("", f"not valid YAML{where}")], str(path)) from None
    return parse_experiment(doc, str(path), path.parent)


def with_site_data(experiment: Experiment, site: str, path: str | Path) -> Experiment:
    """The experiment with ``site`` reading ``path`` instead of its spec'd source: a
    deployed site names its own file (``medfl site --data``), keeping the spec's
    column and level mappings. Parquet by suffix, CSV otherwise."""
    names = [s.name for s in experiment.sites]
    if site not in names:
        raise SpecError([("", f"site {site!r} is not in the experiment (sites: {names})")])
    text = str(Path(path).resolve())
    data: CsvSource | ParquetSource = (
        ParquetSource(path=text) if text.endswith((".parquet", ".pq")) else CsvSource(path=text)
    )
    sites = [s.model_copy(update={"data": data}) if s.name == site else s for s in experiment.sites]
    return experiment.model_copy(update={"sites": sites})
