"""A site's own policy: a file the site process reads (never part of an experiment),
enforced at the site on everything it releases about itself.

Two parts: ``disclosure`` (what a site releases about its patients) and ``privacy``
(which columns an experiment may use, the lifetime epsilon with its ledger file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from medfl.errors import PolicyError
from medfl.spec._models import SpecModel


class Disclosure(SpecModel):
    """Limits on what a site releases about its patients."""

    min_cell_count: int = Field(
        default=5,
        ge=1,
        description="the smallest count reported in any cell (a category level, a histogram "
        "bin, a group); smaller cells are suppressed, with a second cell where one alone "
        "could be recovered from a total",
    )
    min_rows: int = Field(
        default=10, ge=1, description="a site with fewer usable rows releases nothing about them"
    )
    max_parameters_per_row: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="a GLM may have at most this many parameters per row at this site "
        "(0.2: at least 5 rows per parameter)",
    )
    min_sites: int = Field(
        default=2, ge=1, description="this site takes part only in federations this large"
    )
    release_extremes: bool = Field(
        default=False,
        description="release min and max (each is one patient's value); off: suppressed",
    )
    max_statistics_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="describe this site's patients (medfl stats) only with noise of at most "
        "this epsilon (statistics.noise); unset: exact statistics are allowed",
    )


class PrivacyPolicy(SpecModel):
    """What this site lets an experiment do with its rows, over the site's lifetime."""

    allowed_columns: list[str] | None = Field(
        default=None,
        description="the only columns (this site's own names) an experiment may read: "
        "outcome, features, split column; none: any",
    )
    max_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="the epsilon this site spends over its lifetime, every experiment and "
        "tuning trial added up (basic composition); it then takes part only in DP runs",
    )
    ledger: str | None = Field(
        default=None,
        min_length=1,
        description="the JSON file that counts what was spent (relative to this file)",
    )
    when_budget_short: Literal["refuse", "stop-early"] = Field(
        default="refuse",
        description="an experiment needing more than is left: refuse it before training, "
        "or take part and stop contributing before the round that would exceed it",
    )
    require_secure_aggregation: bool = Field(
        default=False,
        description="take part only where the server sees no single site's update: "
        "experiments with privacy.secureAggregation (SecAgg+); a plain training request is "
        "refused",
    )

    @model_validator(mode="after")
    def _budget_has_ledger(self) -> PrivacyPolicy:
        if self.max_epsilon is not None and self.ledger is None:
            raise ValueError("'maxEpsilon' needs 'ledger': the file that counts what is spent")
        return self


class SitePolicy(SpecModel):
    disclosure: Disclosure = Field(default_factory=Disclosure)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)


def load_policy(path: str | Path) -> SitePolicy:
    """A site's policy file (YAML); every mistake named by its path in the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            [("", f"cannot read the policy file: {exc.strerror}")], str(path)
        ) from None
    return _resolve_ledger(parse_policy(text, str(path)), path.parent)


def parse_policy(text: str, source: str) -> SitePolicy:
    """A policy from its YAML text (the ledger path as written); ``source`` names it in
    errors."""
    from medfl.spec._load import _Loader, _problems

    try:
        doc = yaml.load(text, Loader=_Loader) or {}
    except yaml.YAMLError:
        raise PolicyError([("", "not valid YAML")], source) from None
    try:
        return SitePolicy.model_validate(doc)
    except ValidationError as err:
        raise PolicyError(_problems(err, ""), source) from None


def _resolve_ledger(policy: SitePolicy, base_dir: Path) -> SitePolicy:
    """The ledger path as the site means it: relative to its policy file."""
    ledger = policy.privacy.ledger
    if ledger is None or Path(ledger).is_absolute():
        return policy
    privacy = policy.privacy.model_copy(update={"ledger": str((base_dir / ledger).resolve())})
    return policy.model_copy(update={"privacy": privacy})


PolicyFiles = tuple[tuple[str, Path], ...]  # (site, its policy file): what a runner is given


def load_policies(files: PolicyFiles) -> dict[str, SitePolicy]:
    """Each simulated site's policy, read at the site boundary (default limits for the rest)."""
    return {site: load_policy(path) for site, path in files}
