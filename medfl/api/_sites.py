"""The sites this service serves: a YAML file maps each name to its data source (and
policy file). Requests name sites from it, never paths; what the service shows about
a site are counts and aggregates under that site's disclosure limits, never rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import Field, ValidationError

from medfl.data import read_site
from medfl.data._disclosure import suppress_cells
from medfl.errors import SpecError
from medfl.spec import DemoSource, Site
from medfl.spec._base import SpecModel
from medfl.spec._load import _Loader, _problems, resolve_paths
from medfl.spec._models import DNS_LABEL, DataSource, Experiment, Level
from medfl.spec._policy import Disclosure, SitePolicy, load_policy
from medfl.stats._describe import Description, describe
from medfl.stats._guard import guard

# A column with more distinct values than this is not offered as categorical (an id).
MAX_LEVELS = 12
DEMO_HOSPITALS = {
    "cleveland": "Cleveland",
    "hungary": "Hungary",
    "switzerland": "Switzerland",
    "va-long-beach": "VA Long Beach",
}


class ConfiguredSite(SpecModel):
    """One entry of the sites file: a Site without its name, and its policy file."""

    data: DataSource
    columns: dict[str, str] = Field(default_factory=dict)
    levels: dict[str, dict[Level, Level]] = Field(default_factory=dict)
    na_values: list[Level] = Field(default_factory=list)
    policy: str | None = Field(default=None, description="the site's policy file")


class SitesFile(SpecModel):
    sites: dict[str, ConfiguredSite] = Field(min_length=1)


@dataclass(frozen=True)
class ServedSite:
    site: Site  # named, with its data source
    policy_file: Path | None

    @property
    def name(self) -> str:
        return self.site.name

    def policy(self) -> SitePolicy:
        return load_policy(self.policy_file) if self.policy_file else SitePolicy()


def demo_sites() -> dict[str, ServedSite]:
    return {
        name: ServedSite(Site(name=name, data=DemoSource(hospital=hospital)), None)  # type: ignore[arg-type]
        for name, hospital in DEMO_HOSPITALS.items()
    }


def load_sites(path: Path | None) -> dict[str, ServedSite]:
    """The served sites from ``path`` (relative paths against its folder), or the demo's."""
    if path is None:
        return demo_sites()
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        parsed = SitesFile.model_validate(doc)
    except OSError as exc:
        raise SpecError([("", f"cannot read the sites file: {exc.strerror}")], str(path)) from None
    except yaml.YAMLError:
        raise SpecError([("", "not valid YAML")], str(path)) from None
    except ValidationError as err:
        raise SpecError(_problems(err, ""), str(path)) from None
    return {
        name: _served(name, entry, path.parent, str(path)) for name, entry in parsed.sites.items()
    }


def _served(name: str, entry: ConfiguredSite, base: Path, source: str) -> ServedSite:
    if not re.match(DNS_LABEL, name) or len(name) > 40:
        raise SpecError([(f"sites.{name}", "use lower-case letters, digits and '-'")], source)
    fields = entry.model_dump(exclude={"policy"})
    site = Site.model_validate({"name": name, **fields})
    policy = None
    if entry.policy:
        policy = Path(entry.policy)
        policy = policy if policy.is_absolute() else (base / policy).resolve()
    return ServedSite(_resolved(site, base), policy)


def _resolved(site: Site, base: Path) -> Site:
    probe = Experiment.model_validate(
        {"name": "probe", "sites": [site], "schema": {"target": {"column": "y"}, "numeric": ["x"]}}
    )
    return resolve_paths(probe, base).sites[0]


# --- what is shown about a site ----------------------------------------------


def _is_number(column: pd.Series) -> bool:
    present = column.dropna()
    return len(present) > 0 and bool(pd.to_numeric(present, errors="coerce").notna().all())


def column_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """numeric, categorical (a few levels), or both (numbers with a few values)."""
    kinds = {}
    for name in frame.columns:
        levels = frame[name].nunique(dropna=True)
        if levels == 0:
            kinds[str(name)] = "empty"  # no value at this site: fits any kind
            continue
        numeric, few = _is_number(frame[name]), levels <= MAX_LEVELS
        kinds[str(name)] = (
            "both"
            if numeric and few
            else "numeric"
            if numeric
            else ("categorical" if few else "text")
        )
    return kinds


def summary(served: ServedSite) -> dict:
    """The site's rows, columns and per-column aggregates, as its policy lets them out:
    under its minRows nothing but the column names and kinds."""
    frame = read_site(served.site)
    limits: Disclosure = served.policy().disclosure
    kinds = column_kinds(frame)
    numeric = [c for c, k in kinds.items() if k in ("numeric", "both")]
    numbers = frame[numeric].apply(pd.to_numeric, errors="coerce")
    desc = guard(describe(numbers, numeric, []), limits, served.name)
    released = desc.rows > 0
    columns = [_column(frame[name], kind, desc, limits, released) for name, kind in kinds.items()]
    rows = len(frame) if released else None
    return {"rows": rows, "columns": columns, "suppressed": desc.suppressed}


def _column(
    values: pd.Series, kind: str, desc: Description, limits: Disclosure, released: bool
) -> dict[str, Any]:
    name = str(values.name)
    entry: dict[str, Any] = {"name": name, "kind": kind, "missing": None}
    missing = int(values.isna().sum())
    if released and not 0 < missing < limits.min_cell_count:
        entry["missing"] = missing
    if name in desc.numeric:
        moments = desc.numeric[name].moments
        entry["mean"] = None if moments is None else moments.mean
        entry["sd"] = desc.numeric[name].sd
    if kind in ("categorical", "both") and released:
        counts = values.astype(object).fillna("__missing__").value_counts()
        kept, _, _ = suppress_cells([int(v) for v in counts.to_numpy()], limits.min_cell_count)
        entry["levels"] = {str(k): c for k, c in zip(counts.index, kept, strict=True)}
    return entry


def shared_columns(summaries: list[dict]) -> list[dict]:
    """Columns every chosen site has, with the kind they all allow."""
    if not summaries:
        return []
    order = [c["name"] for c in summaries[0]["columns"]]
    kinds: dict[str, set[str]] = {}
    for s in summaries:
        present = {c["name"]: c["kind"] for c in s["columns"]}
        for name in order:
            kinds.setdefault(name, set()).add(present.get(name, "absent"))
    for found in kinds.values():
        found.discard("empty")
    out = []
    for name in order:
        found = kinds[name]
        if not found or "absent" in found or "text" in found:
            continue
        numeric = found <= {"numeric", "both"}
        categorical = found <= {"categorical", "both"}
        out.append({"name": name, "numeric": bool(numeric), "categorical": bool(categorical)})
    return out
