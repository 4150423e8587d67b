"""Differential privacy at the sites: plans, one accountant per site for the whole
experiment, the site's privacy policy and its ledger, and what ε covers.

Opacus loads only where DP is on (``medfl.privacy._accountant``, ``_plan``)."""

from medfl.privacy._ledger import Ledger
from medfl.privacy._scope import SCOPE, secured
from medfl.privacy._site import PrivacyResume, PrivacySpent, SitePrivacy, used_columns

__all__ = [
    "SCOPE",
    "Ledger",
    "PrivacyResume",
    "PrivacySpent",
    "SitePrivacy",
    "secured",
    "used_columns",
]
