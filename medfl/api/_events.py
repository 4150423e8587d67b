"""Server-Sent Events of a run: one ``round`` event per finished round (global and
per-site validation metrics), ``status`` when the run's state changes, and ``end``
with the final state, after which the stream closes. ``Last-Event-ID`` (the round)
resumes a stream without repeating rounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from medfl.api._schemas import RunPublic
from medfl.api._service import Service

FINAL = ("succeeded", "failed", "cancelled", "interrupted")
HEARTBEAT_S = 15.0


def frame(event: str, data: str, event_id: int | None = None) -> str:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n"


async def run_events(
    service: Service,
    run_id: str,
    after: int,
    disconnected: Callable[[], Awaitable[bool]],
    poll_s: float = 0.2,
) -> AsyncIterator[str]:
    last_status: str | None = None
    beat = time.monotonic()
    while True:
        run: RunPublic = await run_in_threadpool(service.run, run_id)
        for record in await run_in_threadpool(service.rounds, run_id, after):
            yield frame("round", record.model_dump_json(by_alias=True), record.round)
            after = record.round
        if run.status != last_status:
            last_status = run.status
            yield frame("status", run.model_dump_json(by_alias=True))
        if run.status in FINAL:
            yield frame("end", run.model_dump_json(by_alias=True))
            return
        if time.monotonic() - beat > HEARTBEAT_S:
            beat = time.monotonic()
            yield ": keep-alive\n\n"
        if await disconnected():
            return
        await asyncio.sleep(poll_s)


def last_event_id(header: str | None) -> int:
    try:
        return max(0, int(header or 0))
    except ValueError:
        return 0


__all__ = ["frame", "last_event_id", "run_events"]
