"""The ``FederatedExperiment`` CRD, generated from the pydantic models.

Kubernetes wants a *structural* openAPIV3Schema: no ``$ref``, a ``type`` on every
node, ``nullable`` instead of ``null`` types, and junctors (``oneOf``, ``not``, ...)
that only add value checks to properties declared beside them. Pydantic writes
JSON Schema 2020-12; this module translates one into the other, and raises on a
keyword it does not know, so a new kind of spec field is noticed here rather than
by an API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medfl import __version__
from medfl.k8s._status import ExperimentStatus
from medfl.spec import API_VERSION, KIND, Experiment

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "federatedexperiments"
SHORT_NAME = "fedexp"
CRD_NAME = f"{PLURAL}.{GROUP}"

Schema = dict[str, Any]

# Keywords copied as they are (apiextensions.k8s.io/v1 JSONSchemaProps).
_KEPT = {
    "type", "format", "description", "enum", "pattern", "minimum", "maximum",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "required", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}  # fmt: skip
# Keywords that have no place in a CRD: names, the discriminator (rebuilt as an enum),
# readOnly on computed status fields.
_DROPPED = {"title", "discriminator", "readOnly", "$defs"}


class _Converter:
    def __init__(self, defs: dict[str, Schema]) -> None:
        self.defs = defs

    def convert(self, node: Schema) -> Schema:
        node = self._resolve(node)
        if "anyOf" in node and {"type": "null"} in node["anyOf"]:
            return self._nullable(node)
        if "discriminator" in node:
            return self._union(node)
        out: Schema = {}
        for key, value in node.items():
            self._keyword(out, key, value)
        if not out.get("type") and not _untyped_ok(out):
            out["x-kubernetes-preserve-unknown-fields"] = True  # `Any`: any JSON value
        return out

    def _keyword(self, out: Schema, key: str, value: Any) -> None:
        if key in _KEPT:
            out[key] = value
        elif key == "default":
            if value is not None:
                out["default"] = value
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # 2020-12 gives the bound; OpenAPI v3.0 a flag beside minimum/maximum.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: self.convert(prop) for name, prop in value.items()}
        elif key == "items":
            out[key] = self.convert(value)
        elif key == "additionalProperties":
            self._additional(out, value)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_junctor(branch) for branch in value]
        elif key not in _DROPPED:
            raise ValueError(f"no CRD translation for the JSON Schema keyword {key!r}")

    def _additional(self, out: Schema, value: Any) -> None:
        if value is True:  # dict[str, Any]: keep whatever the user wrote
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif value is not False:  # false is forbidden; pruning drops unknown fields
            out["additionalProperties"] = self.convert(value)

    def _resolve(self, node: Schema) -> Schema:
        """Inline a ``$ref``; keywords beside it (description, default) win."""
        if "$ref" not in node:
            return node
        name = node["$ref"].removeprefix("#/$defs/")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**self._resolve(self.defs[name]), **siblings}

    def _nullable(self, node: Schema) -> Schema:
        """``X | None``. Where None is the default it means "not given": the API server
        prunes a null it is not told is allowed, so a null reads as the field left out
        (and rules such as "exactly one of claimName or hostPath" still hold). Only a
        null that means something else is kept, as ``nullable``."""
        others = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
        if len(others) != 1:
            raise ValueError(f"a union of several types has no structural form: {node}")
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        converted = self.convert({**others[0], **outer})
        if "default" in node and node["default"] is None:
            return converted
        return {**converted, "nullable": True}

    def _union(self, node: Schema) -> Schema:
        """A discriminated union as one object: every variant's properties, the tag as an
        enum, and one ``oneOf`` branch per variant that allows only its own properties."""
        tag = node["discriminator"]["propertyName"]
        variants = [self.convert(self._resolve(ref)) for ref in node["oneOf"]]
        properties = _merged_properties(variants, tag)
        tags = [v["properties"][tag]["enum"][0] for v in variants]
        properties[tag] = {"type": "string", "enum": tags}
        out: Schema = {"type": "object", "properties": properties, "required": [tag]}
        if "description" in node:
            out["description"] = node["description"]
        out["oneOf"] = [_variant_branch(v, tag, properties) for v in variants]
        return out


def _untyped_ok(node: Schema) -> bool:
    return bool(
        node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    )


def _junctor(branch: Schema) -> Schema:
    """A branch of oneOf/anyOf/allOf as the spec wrote it. Kubernetes allows only checks
    there (here: ``required``), and types only in the int-or-string form."""
    if set(branch) <= {"required"} or branch in ({"type": "integer"}, {"type": "string"}):
        return dict(branch)
    raise ValueError(f"no structural form for the junctor branch {branch}")


def _merged_properties(variants: list[Schema], tag: str) -> dict[str, Schema]:
    """Every variant's properties once. A default would be filled in for every variant
    by the API server, so none is kept; a property typed differently is an error (its
    first description is kept)."""
    merged: dict[str, Schema] = {}
    for variant in variants:
        for name, prop in variant["properties"].items():
            if name == tag:
                continue
            prop = {k: v for k, v in prop.items() if k != "default"}
            if name not in merged:
                merged[name] = prop
            elif _checks(merged[name]) != _checks(prop):
                raise ValueError(f"property {name!r} differs between the variants of a union")
            elif "description" not in merged[name] and "description" in prop:
                merged[name]["description"] = prop["description"]
    return merged


def _checks(prop: Schema) -> Schema:
    return {k: v for k, v in prop.items() if k != "description"}


def _variant_branch(variant: Schema, tag: str, properties: dict[str, Schema]) -> Schema:
    own = set(variant["properties"])
    branch: Schema = {"properties": {tag: {"enum": variant["properties"][tag]["enum"]}}}
    required = [name for name in variant.get("required", []) if name != tag]
    if required:
        branch["required"] = required
    foreign = [name for name in properties if name not in own]
    if foreign:
        branch["not"] = {"anyOf": [{"required": [name]} for name in foreign]}
    return branch


def _structural(schema: Schema) -> Schema:
    return _Converter(schema.get("$defs", {})).convert(schema)


def spec_schema() -> Schema:
    """The CR's ``spec``: an ``Experiment``, whose name may come from metadata.name."""
    spec = _structural(Experiment.model_json_schema(by_alias=True))
    spec["required"] = [name for name in spec["required"] if name != "name"]
    spec["properties"]["name"]["description"] = "default: metadata.name"
    return spec


def status_schema() -> Schema:
    """The CR's ``status``. Nothing required: the operator patches it piecemeal."""
    status = _structural(ExperimentStatus.model_json_schema(mode="serialization", by_alias=True))
    status.pop("required", None)
    return status


def _printer_columns() -> list[Schema]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Round", "type": "string", "jsonPath": ".status.round"},
        {"name": "Sites Ready", "type": "string", "jsonPath": ".status.sitesReady"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd_manifest() -> Schema:
    """The CustomResourceDefinition, as a manifest."""
    schema = {
        "type": "object",
        "description": "A federated experiment: sites, schema, model, training (medfl).",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "required": ["spec"],
    }
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
        "additionalPrinterColumns": _printer_columns(),
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "medfl"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["medfl"],
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


_HEADER = (
    "# Generated by `make crds` (python -m medfl.k8s) from medfl {version}'s pydantic models:\n"
    "# medfl/spec (spec) and medfl/k8s/_status.py (status). Do not edit by hand.\n"
)


def crd_yaml() -> str:
    """The CRD as plain YAML, the form `kubectl apply -f` takes."""
    body = yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)
    return _HEADER.format(version=__version__) + body


def crd_chart_template() -> str:
    """The CRD as a chart template: behind ``crds.enabled``, and under templates/ rather
    than crds/, so ``helm upgrade`` updates it."""
    body = crd_yaml()
    if "{{" in body:  # helm would read it as a template action
        raise ValueError("the CRD holds '{{', which helm would try to render")
    return "{{- if .Values.crds.enabled }}\n" + body + "{{- end }}\n"


CRD_TEMPLATE = Path("templates/crd") / f"{CRD_NAME}.yaml"


def write_crds(chart: Path) -> Path:
    """Write the CRD template into ``chart``; returns the file written."""
    target = chart / CRD_TEMPLATE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(crd_chart_template(), encoding="utf-8")
    return target
