"""The medfl operator (kopf): a FederatedExperiment becomes a SuperLink Deployment and
Service, one SuperNode Deployment per site, TLS and key Secrets and a Job that submits
the run. Run it with ``kopf run --module=medfl_operator`` (the chart's Deployment).

Importing the package registers its handlers with kopf, as ``kopf run`` expects; it
does no other work (settings and the API client are made in kopf's startup handler)."""

from medfl.k8s._names import Owner, fit
from medfl_operator import _handlers  # noqa: F401  (registers the handlers)
from medfl_operator._reconcile import Reconciler
from medfl_operator._render import Target

__all__ = ["Owner", "Reconciler", "Target", "fit"]
