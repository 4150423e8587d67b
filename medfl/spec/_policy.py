"""A site's own policy: a file the site process reads (never part of an experiment),
enforced at the site on everything it releases about itself.

The disclosure limits are here; the privacy work adds allowed columns, a lifetime
privacy budget and secure aggregation to the same file.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

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


class SitePolicy(SpecModel):
    disclosure: Disclosure = Field(default_factory=Disclosure)


def load_policy(path: str | Path) -> SitePolicy:
    """A site's policy file (YAML); every mistake named by its path in the file."""
    from medfl.spec._load import _Loader, _problems

    path = Path(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except OSError as exc:
        raise PolicyError(
            [("", f"cannot read the policy file: {exc.strerror}")], str(path)
        ) from None
    except yaml.YAMLError:
        raise PolicyError([("", "not valid YAML")], str(path)) from None
    try:
        return SitePolicy.model_validate(doc)
    except ValidationError as err:
        raise PolicyError(_problems(err, ""), str(path)) from None


PolicyFiles = tuple[tuple[str, Path], ...]  # (site, its policy file): what a runner is given


def load_policies(files: PolicyFiles) -> dict[str, SitePolicy]:
    """Each simulated site's policy, read at the site boundary (default limits for the rest)."""
    return {site: load_policy(path) for site, path in files}
