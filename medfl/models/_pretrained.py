"""Starting weights from a file or an earlier run, checked layer by layer.

Only tensors are read (``torch.load(weights_only=True)``, or safetensors): a weights
file never runs code. Loading copies each tensor as is, so matching dtypes load
bit for bit.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from medfl.errors import SpecError
from medfl.models._parts import matches
from medfl.spec._models import Pretrained

WHERE = "model.pretrained"
RUN_MODEL_FILE = "model.pt"  # medfl.results writes it; read here without importing results


@dataclass
class Weights:
    """What a pretrained source holds."""

    tensors: dict[str, torch.Tensor]
    kind: Literal["state-dict", "safetensors", "run"]
    sha256: str
    preprocessing: dict[str, Any] | None = None  # a medfl run's input encoding
    features: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    loaded: list[str]
    reinitialized: list[str]
    unused: list[str]  # in the file, not taken by any layer
    converted: list[str]  # loaded with a dtype change


def _problem(message: str, at: str = "path") -> SpecError:
    return SpecError([(f"{WHERE}.{at}", message)])


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensor_mapping(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """A state dict, also inside the usual checkpoint wrappers."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    raise _problem(f"{path} holds no state dict (a mapping of layer names to tensors)")


def _torch_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip and torch errors alike: the file is unusable
        if not zipfile.is_zipfile(path):
            raise _problem(f"{path} is not a PyTorch weights file") from None
        raise _problem(
            f"{path} holds Python objects besides tensors, and medfl loads only tensors "
            "(never code): save the model's state_dict() instead"
        ) from None


def _from_run(folder: Path) -> Weights:
    path = folder / RUN_MODEL_FILE
    if not path.is_file():
        raise _problem(f"{folder} is a folder but holds no trained medfl model ({RUN_MODEL_FILE})")
    saved = _torch_file(path)
    names = saved.get("names") if isinstance(saved, dict) else None
    if not isinstance(names, list) or "params" not in saved:
        raise _problem(f"{path} was written by an older medfl, without layer names; rerun it")
    tensors = dict(zip(names, saved["params"], strict=True))
    preprocessing = saved.get("preprocessing")
    features = list(saved.get("features") or [])
    return Weights(tensors, "run", _digest(path), preprocessing, features)


def read_weights(spec: Pretrained) -> Weights:
    """Read the source named by ``model.pretrained.path``."""
    path = Path(spec.path)
    if path.is_dir():
        weights = _from_run(path)
    elif not path.is_file():
        raise _problem(f"{path}: no such file or folder")
    elif path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(path)
        except (SafetensorError, OSError) as exc:
            raise _problem(f"{path} is not a readable safetensors file: {exc}") from None
        weights = Weights(tensors, "safetensors", _digest(path))
    else:
        weights = Weights(_tensor_mapping(_torch_file(path), path), "state-dict", _digest(path))
    if spec.preprocessing == "source" and weights.preprocessing is None:
        raise _problem(
            "'source' needs the folder of a medfl run (a weights file carries no input "
            "encoding); use 'federation'",
            "preprocessing",
        )
    return weights


def _source_name(name: str, rename: dict[str, str]) -> str:
    """The file's name for this model's tensor ``name``: the longest renamed prefix wins."""
    for prefix in sorted(rename, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return rename[prefix] + name[len(prefix) :]
    return name


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def load_into(
    model: nn.Module, weights: Weights, spec: Pretrained, features: list[str] | None = None
) -> LoadReport:
    """Copy the source's tensors into ``model``; every mismatch is named before any is
    loaded. ``features``: the model's input columns, for the hint when widths differ."""
    state = model.state_dict()
    report = LoadReport([], [], [], [])
    missing, problems, taken, widths = [], [], set(), []
    for name, current in state.items():
        source = _source_name(name, spec.rename)
        if any(matches(name, p) for p in spec.reinitialize):
            report.reinitialized.append(name)
            taken.add(source)  # the file's tensor is set aside on purpose, not unused
            continue
        tensor = weights.tensors.get(source)
        if tensor is None:
            missing.append(name if source == name else f"{name} (as {source})")
            continue
        taken.add(source)
        if tensor.shape != current.shape:
            widths.append((tuple(tensor.shape), tuple(current.shape)))
            problems.append(
                f"layer {name!r} is {_shape(tensor)} in the file but {_shape(current)} in "
                "this model"
            )
    _check_patterns(list(state), spec)
    if missing:
        problems.append(
            f"the file has no tensor for {', '.join(missing)} (it has: "
            f"{', '.join(list(weights.tensors)[:20])}); map names with rename or list "
            "the layer under reinitialize"
        )
    if problems:
        raise _problem("; ".join(problems) + _width_hint(weights, features or [], widths))
    new = dict(state)
    for name in state:
        if name in report.reinitialized:
            continue
        tensor = weights.tensors[_source_name(name, spec.rename)]
        if tensor.dtype != state[name].dtype:
            report.converted.append(name)
        new[name] = tensor.detach().to(state[name].dtype).clone()
        report.loaded.append(name)
    model.load_state_dict(new, strict=True)
    report.unused = [k for k in weights.tensors if k not in taken]
    return report


def _check_patterns(names: list[str], spec: Pretrained) -> None:
    problems = [
        (f"{WHERE}.reinitialize[{i}]", f"{p!r} matches no layer; the model has: {', '.join(names)}")
        for i, p in enumerate(spec.reinitialize)
        if not any(matches(n, p) for n in names)
    ]
    problems += [
        (f"{WHERE}.rename.{p}", f"{p!r} is no layer of this model; it has: {', '.join(names)}")
        for p in spec.rename
        if not any(n == p or n.startswith(p + ".") for n in names)
    ]
    if problems:
        raise SpecError(problems)


def _width_hint(
    weights: Weights, features: list[str], widths: list[tuple[tuple[int, ...], tuple[int, ...]]]
) -> str:
    """A layer whose input width differs from the file's: the encodings differ."""
    n = len(features)
    if not any(
        len(theirs) == len(ours) and any(o == n != t for t, o in zip(theirs, ours, strict=True))
        for theirs, ours in widths
    ):
        return ""
    if weights.kind == "run":
        return (
            f" (that run's model takes {len(weights.features)} inputs, this federation's "
            f"encoding gives {len(features)}: preprocessing 'source' reuses that run's)"
        )
    return (
        f" (this federation's encoding gives the model {len(features)} inputs, listed by "
        "`medfl validate --json` as features; if the file's first layer expects another "
        "number, declare the categories with schema.levels so they match the weights')"
    )
