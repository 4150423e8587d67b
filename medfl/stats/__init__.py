"""Federated statistics: descriptive statistics and GLMs from the sites' sums, under
each site's disclosure policy (``medfl stats``, ``medfl glm``)."""

from medfl.stats._formula import Formula, design_matrix, design_names, parse_formula
from medfl.stats._glm import (
    Family,
    GlmResult,
    GlmTerms,
    SingularDesignError,
    fit,
    glm_dict,
    site_terms,
)

__all__ = [
    "Family",
    "Formula",
    "GlmResult",
    "GlmTerms",
    "SingularDesignError",
    "design_matrix",
    "design_names",
    "fit",
    "glm_dict",
    "parse_formula",
    "site_terms",
]
