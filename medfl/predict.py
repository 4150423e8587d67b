"""Scoring new patients with a finished run's model, preprocessed as the sites' data was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medfl.data import Preprocessor, conform_features
from medfl.errors import DataError, RunNotFoundError
from medfl.models import build_model
from medfl.results._store import MODEL_FILE, RunStore
from medfl.spec import CsvSource, Site
from medfl.training import set_params


def _site(experiment_sites: list[Site], name: str | None) -> Site:
    if name is None:
        return Site(name="input", data=CsvSource(path="-"))
    for site in experiment_sites:
        if site.name == name:
            return site
    known = ", ".join(s.name for s in experiment_sites)
    raise DataError(f"no site {name!r} in this run (sites: {known})", site=name)


def predict(run_dir: Path | str, frame: pd.DataFrame, site: str | None = None) -> pd.DataFrame:
    """Probability of the positive class and the 0/1 prediction for each row of ``frame``.

    Columns are matched by name; with ``site``, that site's column and level
    mappings from the spec apply.
    """
    store = RunStore(Path(run_dir))
    experiment = store.experiment()
    model_path = store.path / MODEL_FILE
    if not model_path.is_file():
        raise RunNotFoundError(f"{store.path} has no trained model ({MODEL_FILE}); did it finish?")
    saved = torch.load(model_path, weights_only=True)
    preprocessor = Preprocessor.from_dict(saved["preprocessing"])
    features = conform_features(frame, experiment.data_schema, _site(experiment.sites, site))
    x = torch.from_numpy(preprocessor.transform(features))
    model = build_model(
        experiment.model, len(preprocessor.feature_names), repair=experiment.privacy.repairs
    )
    set_params(model, [p.numpy() for p in saved["params"]])
    model.eval()
    with torch.no_grad():
        prob = torch.sigmoid(model(x).squeeze(-1)).double().numpy()
    threshold = experiment.evaluation.threshold
    return pd.DataFrame({"probability": prob, "prediction": (prob >= threshold).astype(np.int64)})


def site_kept_layers(run_dir: Path | str) -> list[str]:
    """Tensors the sites kept for themselves in that run: model.pt holds them as at round 0."""
    model = RunStore(Path(run_dir)).load_result().model
    return [layer.name for layer in model.layers if layer.role == "local"] if model else []
