"""Federated statistics (in progress, internal): descriptive statistics and GLMs from
the sites' sums.

What exists: the formula and design matrix over the shared schema; the GLM maths
(site-side sums, server-side IRLS and inference), exact against statsmodels on the
pooled rows; descriptive sums (moments, ranges, histograms on shared edges, level
counts, co-moments) combined exactly. Not yet: the ``medfl glm`` / ``medfl stats``
commands, their Flower messages, and the sites' disclosure guards, without which none
of this may be released about a site.
"""

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
