"""The round-0 model at the server: fresh or pretrained weights, the input encoding
they need, and which tensors are frozen, kept at the sites or sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from medfl.data import Preprocessor, SiteSummary
from medfl.data._prepare import MISSING_LEVEL
from medfl.errors import SpecError
from medfl.models import (
    ModelParts,
    Weights,
    initial_model,
    load_into,
    model_parts,
    read_weights,
    replace_batch_norm,
)
from medfl.results._model import LayerInfo, ModelInfo, PretrainedInfo
from medfl.spec import Experiment
from medfl.training._local import Params, get_params


@dataclass
class StartingModel:
    base: Params  # the whole round-0 state, frozen and local tensors included
    parts: ModelParts
    info: ModelInfo
    notes: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)  # layers replaced for DP-SGD

    def initial(self) -> Params:
        """What the server sends in round 1."""
        return self.parts.shared(self.base)

    def whole(self, shared: Params) -> Params:
        """A whole model from the shared tensors (frozen and local ones as at round 0)."""
        return self.parts.merge(self.base, shared)


def read_source(experiment: Experiment) -> Weights | None:
    pretrained = experiment.model.pretrained
    return read_weights(pretrained) if pretrained is not None else None


def preprocessing_choice(
    experiment: Experiment, weights: Weights | None
) -> Literal["source", "federation"]:
    pretrained = experiment.model.pretrained
    if pretrained is None or weights is None:
        return "federation"
    if pretrained.preprocessing is not None:
        return pretrained.preprocessing
    return "source" if weights.preprocessing is not None else "federation"


def choose_preprocessor(
    experiment: Experiment, summaries: list[SiteSummary], weights: Weights | None
) -> tuple[Preprocessor, list[str]]:
    """The federation's own encoding, or the pretrained run's, with notes on category
    levels the sites have and that run never saw (they encode as all zeros)."""
    schema = experiment.data_schema
    if preprocessing_choice(experiment, weights) == "federation":
        return Preprocessor.from_summaries(schema, summaries), []
    assert weights is not None and weights.preprocessing is not None
    source = Preprocessor.from_dict(weights.preprocessing)
    ours, theirs = set(schema.features), {*source.numeric, *source.categorical}
    if ours != theirs or set(schema.numeric) != set(source.numeric):
        raise SpecError(
            [
                (
                    "model.pretrained.preprocessing",
                    "the earlier run's inputs differ from this schema's: numeric "
                    f"{sorted(source.numeric)} vs {sorted(schema.numeric)}, categorical "
                    f"{sorted(source.categorical)} vs {sorted(schema.categorical)}; list the "
                    "same columns, or use 'federation'",
                )
            ]
        )
    return source, _unseen_levels(source, summaries)


def _unseen_levels(source: Preprocessor, summaries: list[SiteSummary]) -> list[str]:
    notes = []
    for summary in summaries:
        for column in source.categorical:
            known = set(source.vocabulary[column]) | {MISSING_LEVEL}
            new = sorted(k for k in summary.levels.get(column, {}) if k not in known)
            if new:
                notes.append(
                    f"site {summary.site!r}, column {column!r}: level(s) {', '.join(new)} are "
                    "not in the pretrained run's categories and encode as all zeros"
                )
    return notes


def starting_model(
    experiment: Experiment, preprocessor: Preprocessor, weights: Weights | None
) -> StartingModel:
    """The round-0 model; a pretrained source that does not fit fails naming the layer."""
    spec = experiment.model
    model = initial_model(spec, len(preprocessor.feature_names), experiment.training.seed)
    repairs = replace_batch_norm(model) if experiment.privacy.repairs else []
    if experiment.privacy.local:
        from medfl.privacy._model import check_private

        check_private(model, repaired=experiment.privacy.repairs)
    pretrained, notes = None, []
    if weights is not None and spec.pretrained is not None:
        report = load_into(model, weights, spec.pretrained, preprocessor.feature_names)
        pretrained = PretrainedInfo(
            path=spec.pretrained.path,
            kind=weights.kind,
            sha256=weights.sha256,
            preprocessing=preprocessing_choice(experiment, weights),
            loaded=report.loaded,
            reinitialized=report.reinitialized,
            unused=report.unused,
        )
        if report.unused:
            notes.append(
                f"pretrained: {len(report.unused)} tensor(s) of the file match no layer and "
                f"were not used: {', '.join(report.unused)}"
            )
        if report.converted:
            notes.append(
                f"pretrained: converted to this model's dtype: {', '.join(report.converted)}"
            )
    if spec.freeze and spec.pretrained is None:
        notes.append(
            "model.freeze without model.pretrained: the frozen layers keep their random "
            f"starting weights ({', '.join(spec.freeze)})"
        )
    parts = model_parts(model, spec, experiment.personalization)
    base = get_params(model)
    layers = [
        LayerInfo(name=n, shape=list(np.shape(p)), role=parts.role(n))
        for n, p in zip(parts.names, base, strict=True)
    ]
    sent = sum(int(np.size(p)) for p in parts.shared(base))
    total = sum(int(np.size(p)) for p in base)
    info = ModelInfo(layers=layers, values_sent=sent, values_total=total, pretrained=pretrained)
    return StartingModel(base, parts, info, notes, repairs)
