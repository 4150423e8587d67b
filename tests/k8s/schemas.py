"""Checking objects against the CRD's openAPIV3Schema the way an API server would."""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import jsonschema

Schema = dict[str, Any]


def as_json_schema(node: Schema) -> Schema:
    """OpenAPI v3.0 (Kubernetes' dialect) as draft-04 JSON Schema: ``nullable`` becomes a
    null type, and an object with declared properties takes no other keys — what strict
    field validation (kubectl's default) does with an unknown field."""
    out = {k: v for k, v in node.items() if k != "nullable"}
    for key in ("properties", "additionalProperties"):
        if isinstance(node.get(key), dict):
            sub = node[key]
            out[key] = (
                {name: as_json_schema(prop) for name, prop in sub.items()}
                if key == "properties"
                else as_json_schema(sub)
            )
    if "items" in node:
        out["items"] = as_json_schema(node["items"])
    for key in ("oneOf", "anyOf", "allOf"):
        if key in node:
            out[key] = [as_json_schema(branch) for branch in node[key]]
    if "not" in node:
        out["not"] = as_json_schema(node["not"])
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    closed = node.get("type") == "object" and "properties" in node
    if closed and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def pruned(value: Any, node: Schema) -> Any:
    """The object after the API server drops nulls its schema does not allow."""
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else {})
            if item is None and not sub.get("nullable"):
                continue
            out[key] = pruned(item, sub)
        return out
    if isinstance(value, list):
        return [pruned(item, node.get("items", {})) for item in value]
    return value


def dotted(path: deque[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def problems(obj: Any, schema: Schema) -> list[tuple[str, str]]:
    """(path, message) of every rule the object breaks, sorted; [] when it is valid."""
    validator = jsonschema.Draft4Validator(as_json_schema(schema))
    errors = validator.iter_errors(pruned(copy.deepcopy(obj), schema))
    return sorted((dotted(e.absolute_path), e.message) for e in errors)


JUNCTORS = ("oneOf", "anyOf", "allOf", "not")
# What Kubernetes refuses inside a junctor: only value checks may stand there.
NOT_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable"}


def structural_violations(node: Schema, path: str = "") -> list[str]:
    """Breaches of the structural-schema rules (apiextensions.k8s.io/v1): every node has a
    type, no $ref, no additionalProperties: false, properties and additionalProperties not
    together, junctors hold only checks on properties declared beside them."""
    found: list[str] = []
    untyped = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if not node.get("type") and not untyped:
        found.append(f"{path or '<root>'}: no type")
    for bad in ("$ref", "$defs", "const", "discriminator", "title"):
        if bad in node:
            found.append(f"{path}: {bad}")
    if node.get("additionalProperties") is False:
        found.append(f"{path}: additionalProperties false")
    if "properties" in node and "additionalProperties" in node:
        found.append(f"{path}: properties and additionalProperties")
    for name, prop in node.get("properties", {}).items():
        found += structural_violations(prop, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        found += structural_violations(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        found += structural_violations(node["items"], f"{path}[]")
    for key in JUNCTORS:
        for branch in _branches(node, key):
            found += _junctor_violations(branch, node, f"{path}.{key}", untyped=bool(untyped))
    return found


def _branches(node: Schema, key: str) -> list[Schema]:
    value = node.get(key)
    if value is None:
        return []
    return [value] if key == "not" else list(value)


def _junctor_violations(branch: Schema, outer: Schema, path: str, *, untyped: bool) -> list[str]:
    int_or_string = untyped and branch in ({"type": "integer"}, {"type": "string"})
    found = [f"{path}: {k}" for k in NOT_IN_JUNCTORS & set(branch) if not int_or_string]
    declared = set(outer.get("properties", {}))
    for name in branch.get("properties", {}):
        if name not in declared:
            found.append(f"{path}: property {name} not declared outside the junctor")
    for name in branch.get("required", []):
        if name not in declared:
            found.append(f"{path}: required {name} not declared outside the junctor")
    for key in JUNCTORS:
        for sub in _branches(branch, key):
            found += _junctor_violations(sub, outer, f"{path}.{key}", untyped=False)
    return found
