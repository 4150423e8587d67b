"""Kubernetes artefacts generated from the spec: the ``FederatedExperiment`` CRD and
the status model the operator writes. Imports no torch, flwr or kubernetes client."""

from medfl.k8s._crd import (
    CRD_NAME,
    CRD_TEMPLATE,
    GROUP,
    PLURAL,
    SHORT_NAME,
    VERSION,
    crd_chart_template,
    crd_manifest,
    crd_yaml,
    write_crds,
)
from medfl.k8s._status import Condition, ExperimentStatus, PrivacySpent, ResultsLocation, SiteStatus

__all__ = [
    "CRD_NAME",
    "CRD_TEMPLATE",
    "GROUP",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "Condition",
    "ExperimentStatus",
    "PrivacySpent",
    "ResultsLocation",
    "SiteStatus",
    "crd_chart_template",
    "crd_manifest",
    "crd_yaml",
    "write_crds",
]
