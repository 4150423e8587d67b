"""medfl's site executor answers ClientApp tasks of medfl's own app only: the server
cannot make a site run code it sends. Flower's Runtime API calls are replaced by
recorders here; the real calls run in tests/deploy/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.common.constant import ErrorCode, SubStatus
from flwr.supercore.task_identity import TaskIdentity

from medfl.fl import site_executor


@dataclass
class _Run:
    fab_id: str
    run_id: int = 1


class _Heartbeat:
    def __init__(self, *_: Any) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def task(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for field in ("_task_id", "_run_id", "_node_id"):  # set by pull_task_input for real
        monkeypatch.setattr(TaskIdentity, field, 1)
    message = Message(RecordDict(), dst_node_id=1, message_type="query.hello")
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})

    class _Client:
        def close(self) -> None:
            seen["closed"] = True

    monkeypatch.setattr(site_executor, "_client", lambda *a: _Client())
    monkeypatch.setattr(site_executor, "HeartbeatSender", _Heartbeat)
    monkeypatch.setattr(site_executor, "make_task_heartbeat_fn_http", lambda c: None)
    monkeypatch.setattr(
        site_executor, "pull_task_input", lambda c: (message, context, _Run(seen["fab_id"]), None)
    )
    monkeypatch.setattr(site_executor, "push_message", lambda c, m, ctx: seen.update(reply=m))
    monkeypatch.setattr(
        site_executor,
        "push_task_output",
        lambda client, context, sub_status, details: seen.update(
            status=sub_status, details=details
        ),
    )
    return seen


def test_a_task_of_another_app_is_refused_with_an_error_reply(task: dict[str, Any]):
    task["fab_id"] = "someone/else"

    site_executor.run_task("127.0.0.1:1", "token")

    reply = task["reply"]
    assert reply.has_error() and reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "this site runs only medfl/medfl-federation, not 'someone/else'" in reply.error.reason
    assert task["status"] == SubStatus.FAILED and task["closed"] is True


def test_a_task_of_medfls_app_reaches_medfls_client_app(task: dict[str, Any], monkeypatch):
    import medfl.fl.deployed as deployed

    task["fab_id"] = site_executor.APP_ID
    answer = Message(
        RecordDict(), reply_to=Message(RecordDict(), dst_node_id=1, message_type="query.hello")
    )
    monkeypatch.setattr(deployed, "client_app", lambda message, context: answer)

    site_executor.run_task("127.0.0.1:1", "token")

    assert task["reply"] is answer
    assert task["status"] == SubStatus.COMPLETED and task["details"] == ""
