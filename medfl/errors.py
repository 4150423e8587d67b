"""One tree of user-facing errors, each with the CLI exit code it maps to."""

from __future__ import annotations

from pathlib import Path


class MedflError(Exception):
    """Base of every error medfl raises on purpose; its message is for the user.
    ``run_dir`` is set when a run directory holds what was done before the error."""

    exit_code = 1
    run_dir: Path | None = None


class UsageError(MedflError):
    """The command or call itself is wrong (a bad --out, clashing options)."""

    exit_code = 2


class SpecError(MedflError):
    """The experiment spec is invalid; ``problems`` lists (path, message) pairs."""

    exit_code = 3

    what = "experiment spec"

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"invalid {self.what}{where}:"]
        lines += [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class PolicyError(SpecError):
    """A site's policy file is invalid."""

    what = "site policy"


class DataError(MedflError):
    """A site's data cannot be used; the message names the site and column."""

    exit_code = 3

    def __init__(self, message: str, site: str | None = None, column: str | None = None) -> None:
        self.site = site
        self.column = column
        super().__init__(message)


class SitesDataError(DataError):
    """Several sites' data errors found at once (validating every site)."""

    def __init__(self, errors: list[DataError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__("\n".join(str(e) for e in errors), first.site, first.column)


class SiteExcluded(DataError):
    """A site that does not take part: skipped when strategy.minSites allows it, unlike
    a site whose data cannot be read."""


class EmptySiteError(SiteExcluded):
    """A site with no usable rows (an empty file, none left after exclusions)."""


class DisclosureRefusal(SiteExcluded):
    """A site's policy forbids releasing what was asked; the message says which limit,
    never the small count itself."""


class PrivacyRefusal(SiteExcluded):
    """A site's privacy policy forbids the experiment (a column it does not allow, more
    epsilon than it has left); said before any training."""


class BudgetSpent(SiteExcluded):
    """A site's next round would spend more epsilon than its budget allows: it stops
    contributing, and the run says so."""


class TrainingError(MedflError):
    """Training could not go on (too few sites left, a site failing)."""

    exit_code = 4


class RunCancelled(TrainingError):
    """Someone asked a run to stop (the API's cancel); finished rounds are kept."""


class NotFoundError(MedflError):
    """What a request names (an experiment, a run, a site, an artifact) does not exist."""

    exit_code = 3


class ConflictError(UsageError):
    """The request clashes with the state of things (deleting an experiment whose run
    is in flight, cancelling a finished run)."""


class RunNotFoundError(MedflError):
    """A run directory to resume or to predict from is missing or incomplete."""

    exit_code = 3


def error_from_result(kind: str | None, message: str) -> MedflError:
    """A failed run's error as the type it was raised as, from result.json (a run
    that ran in another process: the deployment's ServerApp); anything else, an
    interrupted run included, is a TrainingError."""
    types: dict[str, type[MedflError]] = {
        "DataError": DataError,
        "EmptySiteError": DataError,
        "DisclosureRefusal": DataError,
        "PrivacyRefusal": DataError,
        "SpecError": DataError,  # both exit 3; the message has the spec paths
        "UsageError": UsageError,
    }
    return types.get(kind or "", TrainingError)(message)
