"""kopf's handlers: thin. Each takes the body, calls the plain reconcile, returns nothing
(a handler's return value would land in an undeclared status field)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from medfl.k8s import GROUP, PLURAL, VERSION
from medfl_operator._reconcile import Reconciler
from medfl_operator._settings import reconciler

RESOURCE = (GROUP, VERSION, PLURAL)
PREFIX = "medfl.io"
RETRY_SECONDS = 15.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's own bookkeeping goes to annotations: the API server drops status fields
    # the CRD does not declare, and kopf's default keeps some under status.kopf.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-spec"
    )
    settings.persistence.finalizer = f"{PREFIX}/operator"
    settings.posting.level = logging.WARNING
    memo.reconciler = reconciler()


def _reconciler(memo: kopf.Memo) -> Reconciler:
    found: Reconciler = memo.reconciler
    return found


def kopf_error(exc: ApiException) -> kopf.PermanentError | kopf.TemporaryError:
    """An API server's refusal, as kopf should take it: a manifest it finds invalid
    (400, 422) will not become valid by retrying; anything else (403 until RBAC is
    fixed, 409, 429, 5xx, a connection lost) is retried after a while."""
    message = f"the API server answered {exc.status} {exc.reason}: {exc.body or ''}".strip()
    if exc.status in (400, 422):
        return kopf.PermanentError(message)
    return kopf.TemporaryError(message, delay=RETRY_SECONDS)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    try:
        _reconciler(memo).apply(body)
    except ApiException as exc:
        raise kopf_error(exc) from exc


@kopf.daemon(*RESOURCE, cancellation_timeout=5.0, backoff=5.0)
async def follow(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Keep the status true while the experiment exists. kopf stops it, and removes its
    finalizer, when the experiment is deleted; the children go by their owner references.

    Async on purpose: a sync daemon holds one of kopf's few worker threads for its whole
    life, and a handful of experiments would leave none for the other handlers. Here a
    thread is borrowed only while the children are read."""
    found = _reconciler(memo)
    while not stopped:
        await asyncio.to_thread(found.sync, body)
        await stopped.wait(found.poll_seconds)
