"""The operator's settings, read once at start-up (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kubernetes import client, config

from medfl.k8s._config import OperatorConfig
from medfl_operator._kube import Kube
from medfl_operator._reconcile import Reconciler

CONFIG_ENV = "MEDFL_OPERATOR_CONFIG"  # the chart mounts its ConfigMap's config.yaml here
POLL_ENV = "MEDFL_OPERATOR_POLL_SECONDS"  # how often each experiment's children are read


def load_config(env: Mapping[str, str]) -> OperatorConfig:
    """The chart's configuration file; without one, the defaults (runtime image of this
    medfl version, no GPU pool, no results claim)."""
    path = env.get(CONFIG_ENV)
    if not path:
        return OperatorConfig()
    return OperatorConfig.from_yaml(Path(path).read_text(encoding="utf-8"))


def api_client() -> client.ApiClient:
    """In a pod, its ServiceAccount; elsewhere the current kube context."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def reconciler(env: Mapping[str, str] | None = None) -> Reconciler:
    env = os.environ if env is None else env
    poll = float(env.get(POLL_ENV, "10"))
    return Reconciler(load_config(env), Kube(api_client()), poll_seconds=poll)
