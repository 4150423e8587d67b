"""Which of a model's tensors travel: frozen ones stay fixed everywhere, local ones stay
at each site (personalisation, FedBN), the rest are trained and sent.

Parameters travel as lists in state-dict order; the server and every site compute the
same ``ModelParts`` from the same spec and architecture, so a list of the shared
tensors means the same thing at both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Literal

import numpy as np
from torch import nn

from medfl.errors import SpecError
from medfl.spec._models import ModelSpec, Personalization

Params = list[np.ndarray]
Role = Literal["sent", "frozen", "local"]
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def matches(name: str, pattern: str) -> bool:
    """``hidden1`` names the layer (``hidden1.weight``, ``hidden1.bias``); ``hidden*``
    and ``*.bias`` are shell-style patterns over the tensor names."""
    return name == pattern or name.startswith(pattern + ".") or fnmatchcase(name, pattern)


def select(names: list[str], patterns: list[str], where: str) -> set[str]:
    """The names the patterns pick; a pattern that picks none is a spec error."""
    chosen: set[str] = set()
    problems = []
    for i, pattern in enumerate(patterns):
        picked = {n for n in names if matches(n, pattern)}
        if not picked:
            problems.append(
                (
                    f"{where}[{i}]",
                    f"{pattern!r} matches no layer; the model has: {', '.join(names)}",
                )
            )
        chosen |= picked
    if problems:
        raise SpecError(problems)
    return chosen


@dataclass(frozen=True)
class ModelParts:
    names: tuple[str, ...]
    frozen: frozenset[str]
    local: frozenset[str]

    @cached_property
    def _shared_at(self) -> list[int]:
        return [i for i, n in enumerate(self.names) if n not in self.frozen | self.local]

    @cached_property
    def _local_at(self) -> list[int]:
        return [i for i, n in enumerate(self.names) if n in self.local]

    def role(self, name: str) -> Role:
        return "frozen" if name in self.frozen else "local" if name in self.local else "sent"

    def shared(self, full: Params) -> Params:
        """The tensors that travel, out of a whole state."""
        return [full[i] for i in self._shared_at]

    def merge(self, full: Params, shared: Params) -> Params:
        """``full`` with its travelling tensors replaced by ``shared``."""
        if len(shared) != len(self._shared_at):
            raise ValueError(f"expected {len(self._shared_at)} shared tensors, got {len(shared)}")
        out = list(full)
        for i, p in zip(self._shared_at, shared, strict=True):
            out[i] = p
        return out

    def local_of(self, full: Params) -> Params:
        return [full[i] for i in self._local_at]

    def with_local(self, full: Params, local: Params) -> Params:
        out = list(full)
        for i, p in zip(self._local_at, local, strict=True):
            out[i] = p
        return out

    def apply_freeze(self, model: nn.Module) -> list[nn.Module]:
        """Frozen parameters get no gradient; returns the normalisation layers whose
        every tensor is frozen, which train in eval mode so their statistics stay too."""
        for name, param in model.named_parameters():
            param.requires_grad_(name not in self.frozen)
        held: list[nn.Module] = []
        for prefix, module in model.named_modules():
            if isinstance(module, NORM_LAYERS):
                own = [f"{prefix}.{k}" if prefix else k for k in module.state_dict()]
                if own and all(n in self.frozen for n in own):
                    held.append(module)
        return held


def _normalization_names(model: nn.Module) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_LAYERS):
            names |= {f"{prefix}.{k}" if prefix else k for k in module.state_dict()}
    return names


def model_parts(model: nn.Module, spec: ModelSpec, personal: Personalization) -> ModelParts:
    """Frozen, local and sent tensors of ``model`` as the spec asks; errors name the field."""
    names = list(model.state_dict())
    frozen = select(names, spec.freeze, "model.freeze")
    local = select(names, personal.local_layers, "personalization.localLayers")
    both = sorted(frozen & local)
    if both:
        raise SpecError(
            [("personalization.localLayers", f"also frozen by model.freeze: {', '.join(both)}")]
        )
    if personal.local_normalization:
        norms = _normalization_names(model)
        if not norms:
            raise SpecError(
                [
                    (
                        "personalization.localNormalization",
                        "the model has no normalisation layer (BatchNorm, LayerNorm, "
                        "GroupNorm); for the MLP set model.normalization",
                    )
                ]
            )
        local |= norms - frozen
    if not {n for n, _ in model.named_parameters()} - frozen:
        raise SpecError([("model.freeze", "freezes every layer: nothing is left to train")])
    if not set(names) - frozen - local:
        raise SpecError(
            [("personalization.localLayers", "keeps every layer local: nothing is left to share")]
        )
    return ModelParts(tuple(names), frozenset(frozen), frozenset(local))
