"""The model zoo: logistic regression, an MLP, or a user's own torch.nn.Module."""

from __future__ import annotations

import importlib
from collections import OrderedDict

import torch
from torch import nn

from medfl._seeds import derive_seed
from medfl.errors import SpecError
from medfl.spec._models import CustomModel, LogisticModel, MlpModel, ModelSpec

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


_NORMS: dict[str, type[nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def _mlp(spec: MlpModel, in_features: int, out_features: int) -> nn.Module:
    """Named layers (hidden1, norm1, act1, dropout1, ..., output), so ``freeze``,
    ``reinitialize`` and ``localLayers`` read as what they mean."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_features
    for i, hidden in enumerate(spec.hidden, start=1):
        layers[f"hidden{i}"] = nn.Linear(width, hidden)
        if spec.normalization != "none":
            layers[f"norm{i}"] = _NORMS[spec.normalization](hidden)
        layers[f"act{i}"] = _ACTIVATIONS[spec.activation]()
        if spec.dropout:
            layers[f"dropout{i}"] = nn.Dropout(spec.dropout)
        width = hidden
    layers["output"] = nn.Linear(width, out_features)
    return nn.Sequential(layers)


def _custom(spec: CustomModel, in_features: int, out_features: int) -> nn.Module:
    module_name, _, class_name = spec.import_path.partition(":")
    where = "model.importPath"
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise SpecError([(where, f"cannot import {spec.import_path!r}: {exc}")]) from None
    try:
        model = cls(in_features=in_features, out_features=out_features, **spec.kwargs)
    except TypeError as exc:
        raise SpecError(
            [("model.kwargs", f"{spec.import_path} rejected its arguments: {exc}")]
        ) from None
    if not isinstance(model, nn.Module):
        raise SpecError([(where, f"{spec.import_path} did not build a torch.nn.Module")])
    return model


def build_model(
    spec: ModelSpec, in_features: int, out_features: int = 1, repair: bool = False
) -> nn.Module:
    """The architecture only; weights are whatever torch's current generator gives.
    ``repair`` (privacy.repairModel): BatchNorm layers replaced, as everywhere else."""
    if isinstance(spec, LogisticModel):
        model: nn.Module = nn.Linear(in_features, out_features)
    elif isinstance(spec, MlpModel):
        model = _mlp(spec, in_features, out_features)
    else:
        model = _custom(spec, in_features, out_features)
    if repair:
        replace_batch_norm(model)
    return model


def initial_model(spec: ModelSpec, in_features: int, seed: int, repair: bool = False) -> nn.Module:
    """The round-0 global model, its weights drawn from the experiment seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(spec, in_features, repair=repair)


def replace_batch_norm(model: nn.Module) -> list[str]:
    """Every BatchNorm (it mixes the rows of a batch, which DP-SGD cannot bound) replaced,
    in place, by GroupNorm with one group: each row normalised over its own features (a
    layer norm; Opacus's own fix would use up to 32 groups, which on a hidden layer of 32
    or fewer features normalises each feature alone to zero). Returns what changed."""
    changes = []
    for owner_name, owner in list(model.named_modules()):
        for name, child in list(owner.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                width = child.num_features
                setattr(owner, name, nn.GroupNorm(1, width, eps=child.eps, affine=child.affine))
                where = f"{owner_name}.{name}" if owner_name else name
                changes.append(f"{where}: {type(child).__name__}({width}) -> GroupNorm(1, {width})")
    return changes
