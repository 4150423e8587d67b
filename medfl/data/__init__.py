"""Site data: reading, matching to the schema by name, splitting, federated preprocessing."""

from medfl.data._prepare import (
    MISSING_LEVEL,
    OTHER_LEVEL,
    SiteReport,
    SiteTable,
    conform_features,
    prepare_site,
    prepare_sites,
)
from medfl.data._preprocess import Preprocessor, SiteSummary, summarize
from medfl.data._sources import HEART_DISEASE_HOSPITALS, read_heart_disease, read_site
from medfl.data._split import SplitIndex, predefined_split, stratified_split

__all__ = [
    "HEART_DISEASE_HOSPITALS",
    "MISSING_LEVEL",
    "OTHER_LEVEL",
    "Preprocessor",
    "SiteReport",
    "SiteSummary",
    "SiteTable",
    "SplitIndex",
    "conform_features",
    "predefined_split",
    "prepare_site",
    "prepare_sites",
    "read_heart_disease",
    "read_site",
    "stratified_split",
    "summarize",
]
