"""Formulas over the shared schema (``outcome ~ age + sex + C(cp)``) and the design
matrix each site builds from them, identically: categorical columns are treatment-coded
against the first level of the federation's vocabulary (as patsy does with sorted
levels), numeric columns enter as they are (coefficients in the data's own units)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medfl.data._prepare import MISSING_LEVEL
from medfl.errors import SpecError

_TERM = re.compile(r"^(?:C\(\s*(?P<cat>[A-Za-z_][\w.]*)\s*\)|(?P<name>[A-Za-z_][\w.]*))$")
INTERCEPT = "Intercept"


@dataclass(frozen=True)
class Formula:
    outcome: str
    terms: tuple[str, ...]  # column names, in the formula's order
    categorical: frozenset[str]  # those written C(x) or categorical in the schema
    intercept: bool = True


def parse_formula(text: str, numeric: list[str], categorical: list[str], where: str) -> Formula:
    """``y ~ a + C(b) [- 1]``: terms must be schema columns; errors name ``where``."""
    left, sep, right = text.partition("~")
    if not sep or not left.strip() or not right.strip():
        raise SpecError([(where, f"{text!r} is not 'outcome ~ term + term ...'")])
    outcome = left.strip()
    if re.search(r"[+-]\s*$", right) or re.match(r"^\s*\+", right):
        raise SpecError([(where, f"{text!r} has a '+' or '-' with no term after it")])
    parts = [p.strip() for p in re.split(r"\s*([+-])\s*", right.strip()) if p.strip()]
    intercept, terms, sign = True, [], "+"
    problems = []
    for part in parts:
        if part in "+-":
            sign = part
            continue
        if part in ("0", "1"):
            intercept = (sign, part) not in (("-", "1"), ("+", "0"))
            continue
        found = _TERM.match(part)
        if found is None or sign == "-":
            problems.append((where, f"cannot read the term {part!r} (use name, C(name), - 1)"))
            continue
        name = found["cat"] or found["name"]
        if name not in numeric and name not in categorical:
            problems.append(
                (where, f"{name!r} is not a schema column ({', '.join(numeric + categorical)})")
            )
            continue
        if found["cat"] and name in numeric:
            problems.append(
                (where, f"C({name}): {name!r} is numeric in the schema; list it under categorical")
            )
            continue
        if name in terms:
            problems.append((where, f"{name!r} appears twice"))
        terms.append(name)
    if outcome in terms:
        problems.append((where, f"the outcome {outcome!r} is also a term"))
    if problems:
        raise SpecError(problems)
    cats = frozenset(t for t in terms if t in categorical)
    return Formula(outcome, tuple(terms), cats, intercept)


def _levels(vocabulary: dict[str, list[str]], column: str) -> list[str]:
    """The column's levels but the missing one: rows with a missing term are left out."""
    return [level for level in vocabulary[column] if level != MISSING_LEVEL]


def _full_rank_term(formula: Formula) -> str | None:
    """Without an intercept the first categorical term keeps all its levels (patsy)."""
    if formula.intercept:
        return None
    return next((t for t in formula.terms if t in formula.categorical), None)


def _coded(formula: Formula, vocabulary: dict[str, list[str]], term: str) -> list[str]:
    """The levels a categorical term has columns for."""
    levels = _levels(vocabulary, term)
    return levels if term == _full_rank_term(formula) else levels[1:]


def design_names(formula: Formula, vocabulary: dict[str, list[str]]) -> list[str]:
    names = [INTERCEPT] if formula.intercept else []
    full = _full_rank_term(formula)
    for term in formula.terms:
        if term in formula.categorical:
            mark = "" if term == full else "T."
            names += [f"{term}[{mark}{level}]" for level in _coded(formula, vocabulary, term)]
        else:
            names.append(term)
    return names


def design_matrix(
    frame: pd.DataFrame, formula: Formula, vocabulary: dict[str, list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix of the complete rows and the mask of those rows (a row with a
    missing term is left out, as statsmodels does)."""
    complete = frame[list(formula.terms)].notna().all(axis=1).to_numpy()
    rows = frame[complete]
    blocks: list[np.ndarray] = [np.ones((len(rows), 1))] if formula.intercept else []
    for term in formula.terms:
        if term in formula.categorical:
            levels = np.array(_coded(formula, vocabulary, term), dtype=object)
            values = rows[term].astype(str).to_numpy()
            blocks.append((values[:, None] == levels[None, :]).astype(float))
        else:
            blocks.append(rows[term].astype(float).to_numpy()[:, None])
    x = np.hstack(blocks) if blocks else np.zeros((len(rows), 0))
    return x, complete
