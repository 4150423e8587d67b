"""The search space: spec paths and their distributions, applied to an experiment.

A trial's parameters are set in the spec as YAML spells it and the result parsed again,
so a trial is an experiment like any other, checked the same way.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from medfl.errors import SpecError
from medfl.spec import Experiment, parse_experiment
from medfl.spec._tuning import Param, Tuning


def with_params(experiment: Experiment, params: dict[str, Any]) -> Experiment:
    """``experiment`` with each ``path: value`` set; the search section dropped."""
    doc = experiment.to_wire()
    doc["tuning"] = None
    for path, value in params.items():
        _set(doc, path, value)
    return parse_experiment(doc, "trial")


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            raise SpecError([(f"tuning.space.{path}", f"the spec has no section {key!r} here")])
        node = child
    node[leaf] = copy.deepcopy(value)


def corners(param: Param) -> list[Any]:
    """The values a check tries: both ends of a range, every choice."""
    if param.choices is not None:
        return list(param.choices)
    low, high = param.bounds
    return [int(low), int(high)] if param.type == "int" else [low, high]


def check_space(experiment: Experiment, tuning: Tuning) -> None:
    """Every parameter's path exists and its extreme values make a valid experiment;
    the problems named by ``tuning.space.<path>``, before any trial starts."""
    problems = []
    for path, param in tuning.space.items():
        for value in corners(param):
            try:
                with_params(experiment, {path: value})
            except SpecError as err:
                problems += [_named(path, value, where, why) for where, why in err.problems]
                break
    if problems:
        raise SpecError(problems)


def _named(path: str, value: Any, where: str, why: str) -> tuple[str, str]:
    if where.startswith("tuning.space."):
        return where, why
    return f"tuning.space.{path}", f"with {value!r}: {where + ': ' if where else ''}{why}"


def default_point(experiment: Experiment, tuning: Tuning) -> dict[str, Any] | None:
    """The spec's own values for the searched parameters, when each lies in its
    distribution (the first trial is then the configuration as written)."""
    doc = experiment.to_wire()
    point = {}
    for path, param in tuning.space.items():
        value: Any = doc
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or not _inside(param, value):
            return None
        point[path] = value
    return point


def _inside(param: Param, value: Any) -> bool:
    if param.choices is not None:
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if param.type == "int" and not float(value).is_integer():
        return False
    low, high = param.bounds
    return low <= value <= high


def optuna_space(tuning: Tuning) -> dict[str, Any]:
    """The space as Optuna distributions (OptunaSearch takes them as they are). A
    categorical's choices travel as JSON text: Optuna keeps only plain values, and a
    choice may be a list (``model.hidden: [[16], [32, 16]]``)."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for path, p in tuning.space.items():
        low, high = p.bounds if p.choices is None else (0.0, 0.0)
        if p.choices is not None:
            out[path] = od.CategoricalDistribution([json.dumps(c) for c in p.choices])
        elif p.type == "int":
            step = int(p.step or 1)
            out[path] = od.IntDistribution(int(low), int(high), log=p.log, step=step)
        else:
            out[path] = od.FloatDistribution(low, high, log=p.log, step=p.step)
    return out


def decoded(tuning: Tuning, sampled: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as the spec spells them (categorical choices from JSON)."""
    return {
        path: _value(tuning.space[path], v) for path, v in sampled.items() if path in tuning.space
    }


def _value(param: Param, sampled: Any) -> Any:
    if param.choices is not None:
        return json.loads(sampled)
    return int(sampled) if param.type == "int" else float(sampled)


def encoded(tuning: Tuning, point: dict[str, Any]) -> dict[str, Any]:
    return {
        path: json.dumps(value) if tuning.space[path].choices is not None else value
        for path, value in point.items()
    }
