"""A site's ClientApp executor: one long-lived process beside the site's SuperNode.

Flower's own executor (``flower-superexec``, started by ``--isolation subprocess``)
starts a new ``flwr-clientapp`` process for every message: importing torch and
Flower and reading the site's data again costs seconds per message, so on a small
machine a round of a tiny model took 15-20 s. This process takes the SuperNode's
ClientApp tasks over its Runtime API exactly as ``flower-superexec`` does (the
SuperNode runs with ``--isolation process``) and runs each in-process, keeping
torch, the parsed spec and the site's prepared data warm between messages.

It runs only medfl's own ClientApp (``medfl.fl.deployed:client_app``, installed with
medfl), never code from the app bundle the server sends: a task of another app is
answered with an error. Flower's message protocol is unchanged, so the server
cannot tell this from Flower's executor.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from flwr.app import Message
from flwr.app.error import Error
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # type: ignore[attr-defined]
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import (
    pull_task_input,
    push_message,
    push_task_output,
)

from medfl.fl._quick import quick_object_pulls

log = logging.getLogger("medfl.site_executor")

APP_ID = "medfl/medfl-federation"  # publisher/name in medfl/fl/app/pyproject.toml
_POLL_SECONDS = 0.1  # between task requests: each costs the SuperNode an HTTP call


def _client(address: str, component: str, token: str | None = None) -> RuntimeHttpClient:
    interceptors: list = [RuntimeVersionHttpInterceptor(component_name=component)]  # type: ignore[type-arg]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,  # loopback, the SuperNode's own Runtime API (as flower-superexec)
        root_certificates=None,
        interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker(),
    )


def run_task(address: str, token: str) -> None:
    """One ClientApp task: pull the message, answer it with medfl's ClientApp, push
    the reply and the node's context. A failure is answered as Flower's would be."""
    from medfl.fl.deployed import client_app

    client = _client(address, "flwr-clientapp", token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message = context = reply = None
    status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, run, _ = pull_task_input(client)
        if run.fab_id != APP_ID:
            raise PermissionError(f"this site runs only {APP_ID}, not {run.fab_id!r}")
        reply = client_app(message=message, context=context)
        status, details = SubStatus.COMPLETED, ""
    except Exception as exc:  # the server gets the error as a reply, as from Flower
        log.exception("ClientApp raised an exception")
        details = f"{type(exc)}:<'{exc}'>"
        if message is not None:
            error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details)
            reply = Message(error, reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
            push_task_output(client=client, context=context, sub_status=status, details=details)
        finally:
            heartbeat.stop()
            client.close()


def _watch_supernode(pid: int) -> None:
    """Exit with the SuperNode: a task executor without its node has nothing to do."""
    while Path(f"/proc/{pid}").exists() and not _zombie(pid):
        time.sleep(0.5)
    log.info("SuperNode %d ended; stopping", pid)
    os._exit(0)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def serve(address: str) -> None:
    """Take the SuperNode's ClientApp tasks, one at a time, until stopped."""
    client = _client(address, "SuperExec")
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    while True:
        answer = client.AcquireTask(request)
        if answer.HasField("task") and answer.token:
            run_task(address, answer.token)
        else:
            time.sleep(_POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medfl-site-executor", description=__doc__)
    parser.add_argument("--runtime-api-address", required=True, metavar="HOST:PORT")
    parser.add_argument("--supernode-pid", type=int, help="exit when this process ends")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    quick_object_pulls()
    import medfl.fl.deployed  # noqa: F401  # torch and medfl now, not when a message waits

    if args.supernode_pid is not None:
        threading.Thread(target=_watch_supernode, args=(args.supernode_pid,), daemon=True).start()
    try:
        serve(args.runtime_api_address)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
