"""Turning a site's raw table into the schema's columns, matched by name, with a report.

Everything here runs at the site. Errors and reports name the site, the column,
category levels and counts, never a patient's values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medfl.data._sources import read_site
from medfl.errors import DataError
from medfl.spec import Experiment, Schema, Site
from medfl.spec._models import CategoricalMissing, NumericMissing, UnknownLevelPolicy

MISSING_LEVEL = "__missing__"
OTHER_LEVEL = "__other__"


@dataclass
class SiteReport:
    """What happened to a site's rows and columns; counts only."""

    site: str
    rows_read: int | None = 0  # None: suppressed under the site's cell minimum
    rows_without_outcome: int | None = 0
    rows_dropped_missing: int | None = 0
    rows: int = 0
    positives: int | None = 0
    dropped_columns: list[str] = field(default_factory=list)
    missing: dict[str, int | None] = field(default_factory=dict)
    unknown_levels: dict[str, list[str]] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)  # the site's disclosure limits
    withheld: dict[str, str] = field(default_factory=dict)  # split -> why no metrics
    suppressed: list[str] = field(default_factory=list)  # what this report hides, and why

    @property
    def negatives(self) -> int | None:
        return None if self.positives is None else self.rows - self.positives

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "rowsRead": self.rows_read,
            "rowsWithoutOutcome": self.rows_without_outcome,
            "rowsDroppedMissing": self.rows_dropped_missing,
            "rows": self.rows,
            "positives": self.positives,
            "negatives": self.negatives,
            "droppedColumns": self.dropped_columns,
            "missing": self.missing,
            "unknownLevels": self.unknown_levels,
            "disclosure": {
                "limits": self.limits,
                "withheld": self.withheld,
                "suppressed": self.suppressed,
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiteReport:
        """to_dict's inverse (negatives is derived, so it is not read back)."""
        disclosure = d.get("disclosure", {})  # absent in reports older than the guards
        return cls(
            site=d["site"],
            rows_read=d["rowsRead"],
            rows_without_outcome=d["rowsWithoutOutcome"],
            rows_dropped_missing=d["rowsDroppedMissing"],
            rows=d["rows"],
            positives=d["positives"],
            dropped_columns=list(d["droppedColumns"]),
            missing=dict(d["missing"]),
            unknown_levels={k: list(v) for k, v in d["unknownLevels"].items()},
            limits=dict(disclosure.get("limits", {})),
            withheld=dict(disclosure.get("withheld", {})),
            suppressed=list(disclosure.get("suppressed", [])),
        )


@dataclass
class SiteTable:
    """A site's data in the schema's columns: numeric as float, categorical as text."""

    site: str
    features: pd.DataFrame
    y: np.ndarray
    report: SiteReport
    split_labels: np.ndarray | None = None  # per row: train / validation / test


# "1.0" in a CSV is what pandas writes for 1 in an integer column that has gaps;
# Parquet keeps it as the float 1.0. Both are the level "1".
_INTEGRAL_TEXT = re.compile(r"^(-?\d+)\.0*$")


def as_level(value: Any) -> str | None:
    """The text of a category value, the same whether it came from CSV or Parquet."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    integral = _INTEGRAL_TEXT.match(text)
    return integral.group(1) if integral else text


def _check_mapping_keys(site: Site, schema: Schema) -> None:
    """A mapping for a column the schema lacks is a typo that would silently do nothing."""
    for mapping, keys, allowed in (
        ("columns", site.columns, {*schema.features, schema.target.column}),
        ("levels", site.levels, {*schema.categorical, schema.target.column}),
    ):
        unknown = sorted(set(keys) - allowed)
        if unknown:
            kind = "schema" if mapping == "columns" else "categorical or outcome"
            raise DataError(
                f"site {site.name!r}: {mapping} mapping names {kind} column(s) the schema "
                f"does not have: {', '.join(map(repr, unknown))}",
                site=site.name,
                column=unknown[0],
            )


def _rename(
    site: Site, raw: pd.DataFrame, schema: Schema, split_column: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    _check_mapping_keys(site, schema)
    # A site column spelled like a schema column that the mapping takes from elsewhere
    # is not that column: drop it, so it neither stands in for nor duplicates the mapped one.
    shadowed = [c for c in raw.columns if c in site.columns and site.columns[c] != c]
    to_schema = {v: k for k, v in site.columns.items()}
    renamed = raw.drop(columns=shadowed).rename(columns=to_schema)
    wanted = [schema.target.column, *schema.features]
    if split_column:
        wanted.append(split_column)
    absent = [c for c in wanted if c not in renamed.columns]
    if absent:
        shown = [
            f"{c!r} (the site's {site.columns[c]!r})" if c in site.columns else repr(c)
            for c in absent
        ]
        has = ", ".join(map(repr, map(str, raw.columns[:30])))
        more = f" and {len(raw.columns) - 30} more" if len(raw.columns) > 30 else ""
        raise DataError(
            f"site {site.name!r}: required column(s) missing: {', '.join(shown)} "
            f"(the site has {has or 'no columns'}{more})",
            site=site.name,
            column=absent[0],
        )
    dropped = [str(c) for c in raw.columns if c in shadowed or to_schema.get(c, c) not in wanted]
    return renamed[wanted], dropped


def _outcome(site_spec: Site, values: pd.Series, schema: Schema) -> pd.Series:
    """1.0 / 0.0 per row, NaN where the outcome is missing."""
    site, target = site_spec.name, schema.target
    codes = site_spec.levels.get(target.column, {})
    levels = values.map(as_level).map(lambda v: codes.get(v, v) if v is not None else v)
    if target.positive_above is not None:
        numbers = pd.to_numeric(levels, errors="coerce")
        bad = int((numbers.isna() & levels.notna()).sum())
        if bad:
            raise DataError(
                f"site {site!r}: outcome column {target.column!r} has {bad} non-numeric value(s)",
                site=site,
                column=target.column,
            )
        return (numbers > target.positive_above).astype(float).where(numbers.notna())
    if target.positive is not None:
        positive = {as_level(v) for v in target.positive}
        if target.negative is not None:
            known = positive | {as_level(v) for v in target.negative}
            stray = sorted(set(levels.dropna()) - known)
            if stray:
                raise DataError(
                    f"site {site!r}: outcome column {target.column!r} has level(s) that are "
                    f"neither positive nor negative: {', '.join(map(repr, stray))}",
                    site=site,
                    column=target.column,
                )
        return levels.isin(positive).astype(float).where(levels.notna())
    binary = {"0": 0.0, "1": 1.0, "FALSE": 0.0, "TRUE": 1.0, "False": 0.0, "True": 1.0}
    others = sorted(set(levels.dropna()) - set(binary))
    if others:
        raise DataError(
            f"site {site!r}: outcome column {target.column!r} has {len(others)} level(s) other "
            "than 0/1; say which are positive with schema.target.positive or positiveAbove",
            site=site,
            column=target.column,
        )
    return levels.map(binary).astype(float)


def _numeric(site: str, frame: pd.DataFrame, schema: Schema) -> None:
    for column in schema.numeric:
        values = frame[column]
        numbers = pd.to_numeric(values, errors="coerce")
        bad = int((numbers.isna() & values.notna()).sum())
        if bad:
            raise DataError(
                f"site {site!r}: numeric column {column!r} has {bad} value(s) that are not numbers",
                site=site,
                column=column,
            )
        frame[column] = numbers.astype(float)


def _categorical(site: Site, frame: pd.DataFrame, schema: Schema, report: SiteReport) -> None:
    for column in schema.categorical:
        codes = site.levels.get(column, {})
        levels = frame[column].map(as_level).map(lambda v, m=codes: m.get(v, v) if v else v)
        declared = schema.levels.get(column)
        if declared is not None:
            unknown = sorted(set(levels.dropna()) - set(declared))
            if unknown:
                report.unknown_levels[column] = unknown
                if schema.unknown_levels is UnknownLevelPolicy.error:
                    raise DataError(
                        f"site {site.name!r}: column {column!r} has level(s) the schema does not "
                        f"declare: {', '.join(map(repr, unknown))} (schema.unknownLevels: error)",
                        site=site.name,
                        column=column,
                    )
                replacement = (
                    OTHER_LEVEL if schema.unknown_levels is UnknownLevelPolicy.other else None
                )
                levels = levels.where(~levels.isin(unknown), replacement)
        frame[column] = levels.astype(object)


def _missing_rows(site: str, frame: pd.DataFrame, schema: Schema, report: SiteReport) -> pd.Series:
    """Rows to drop for missing features, per the policy; errors for 'error' policies."""
    policy = schema.missing
    drop = pd.Series(False, index=frame.index)
    for column in schema.features:
        n_missing = int(frame[column].isna().sum())
        if n_missing:
            report.missing[column] = n_missing
        rule = policy.numeric if column in schema.numeric else policy.categorical
        if n_missing and rule in (NumericMissing.error, CategoricalMissing.error):
            raise DataError(
                f"site {site!r}: column {column!r} has {n_missing} missing value(s) "
                "and the schema's missing policy is 'error'",
                site=site,
                column=column,
            )
        if rule in (NumericMissing.drop, CategoricalMissing.drop):
            drop |= frame[column].isna()
    return drop


SPLIT_NAMES = ("train", "validation", "test")


def _split_labels(site: str, values: pd.Series, column: str) -> np.ndarray:
    labels = values.map(as_level)
    bad = sorted(set(labels.dropna()) - set(SPLIT_NAMES))
    if bad or labels.isna().any():
        raise DataError(
            f"site {site!r}: split column {column!r} must hold only train/validation/test; "
            f"found {len(bad)} other level(s) and {int(labels.isna().sum())} missing",
            site=site,
            column=column,
        )
    return labels.to_numpy(dtype=object)


def prepare_site(site: Site, schema: Schema, split_column: str | None = None) -> SiteTable:
    """Read one site and bring it to the schema; raises DataError naming site and column."""
    raw = read_site(site)
    report = SiteReport(site=site.name, rows_read=len(raw))
    frame, report.dropped_columns = _rename(site, raw, schema, split_column)
    frame = frame.copy()
    y = _outcome(site, frame[schema.target.column], schema)
    _numeric(site.name, frame, schema)
    _categorical(site, frame, schema, report)
    keep = y.notna()
    report.rows_without_outcome = int((~keep).sum())
    drop = _missing_rows(site.name, frame[keep], schema, report)
    report.rows_dropped_missing = int(drop.sum())
    keep &= ~drop.reindex(frame.index, fill_value=False)
    features = frame.loc[keep, schema.features].reset_index(drop=True)
    labels = y[keep].to_numpy(dtype=np.float32)
    report.rows = len(labels)
    report.positives = int(labels.sum())
    split = (
        _split_labels(site.name, frame.loc[keep, split_column], split_column)
        if split_column
        else None
    )
    return SiteTable(site.name, features, labels, report, split)


def prepare_sites(experiment: Experiment) -> list[SiteTable]:
    """Every site's table (in this process: the fast engine and `medfl validate`)."""
    column = experiment.evaluation.split.column
    return [prepare_site(site, experiment.data_schema, column) for site in experiment.sites]


def conform_features(raw: pd.DataFrame, schema: Schema, site: Site) -> pd.DataFrame:
    """New patients' features in the schema's columns (for scoring; no outcome needed),
    read with the site's mappings and its spellings of 'missing' (naValues)."""
    if site.na_values:
        raw = raw.replace(list(site.na_values), None)
    renamed = raw.rename(columns={v: k for k, v in site.columns.items()})
    absent = [c for c in schema.features if c not in renamed.columns]
    if absent:
        raise DataError(
            f"{site.name}: required column(s) missing: {', '.join(map(repr, absent))}",
            site=site.name,
            column=absent[0],
        )
    frame = renamed[schema.features].copy()
    _numeric(site.name, frame, schema)
    _categorical(site, frame, schema, SiteReport(site=site.name))
    return frame
