"""GridTransport: the federation loop's Transport, carried by Flower messages.

The first hello goes to every node Flower has; each reply names its site, which
maps node ids to site names for the rest of the run. Answers come back in the
order the sites were asked for (aggregation sums in that order, so both engines
add the same floats in the same order). A site that does not answer within the
timeout becomes a SiteFailure, so a dead site ends the run (or is outvoted, as
minSites allows) instead of hanging it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from medfl.data import Preprocessor, SiteSummary
from medfl.errors import MedflError, TrainingError
from medfl.fl import _wire as wire
from medfl.privacy import PrivacyResume
from medfl.spec import Experiment
from medfl.stats import GlmTerms
from medfl.stats._describe import Description
from medfl.stats._site import DescribeRequest, GlmPlan, GlmStart
from medfl.training import LocalUpdate, Metrics, Params, SiteFailure, SiteHello
from medfl.training._secure import SecureRequest, SecureSum
from medfl.training._site import SplitName

T = TypeVar("T")
_UNDELIVERED_GRACE_SECONDS = 5.0
# Sites known to be gone (site -> reason), e.g. from the process supervisor of a local
# deployment: their pending requests fail at once instead of waiting for the timeout.
LostSites = Callable[[], Mapping[str, str]]


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait. ``startup`` covers the first contact (Ray and the apps start,
    sites read their data); ``reply`` every later request, training included."""

    startup: float = 180.0
    reply: float = 600.0
    poll: float = 0.01  # between pulls; in-memory for a simulation, HTTP when deployed


class StopSignal:
    """Set from outside the ServerApp's thread when the engine is gone: a transport
    waiting for replies gives up at once, with the reason, instead of timing out."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "the Flower engine stopped before the run finished"

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)


class GridTransport:
    """Sends hello / configure / fit / evaluate to the sites' Flower nodes."""

    def __init__(
        self,
        grid: Grid,
        experiment: Experiment,
        timeouts: Timeouts | None = None,
        stop: StopSignal | None = None,
        lost: LostSites | None = None,
    ) -> None:
        self.grid = grid
        self.experiment = experiment
        self.timeouts = timeouts or Timeouts()
        self.stop = stop or StopSignal()
        self.lost = lost or (lambda: {})
        self.nodes: dict[str, int] = {}  # site name -> node id, learnt from hello replies
        self.greeted: list[str] = []  # sites whose hello succeeded: the ones to configure

    # --- Transport ------------------------------------------------------------

    def hello(
        self, sites: list[str], resume: Mapping[str, PrivacyResume] | None = None
    ) -> dict[str, SiteHello | Exception]:
        answers = self._first_contact(
            wire.HELLO, wire.hello_of, sites, lambda: wire.hello_request(resume)
        )
        self.greeted = [s for s, a in answers.items() if isinstance(a, SiteHello)]
        return answers

    def _first_contact(
        self,
        message_type: str,
        read: Callable[[RecordDict], T],
        sites: list[str],
        content: Callable[[], RecordDict] = RecordDict,
    ) -> dict[str, T | Exception]:
        """Ask every node Flower has; each reply names its site, which maps node ids to
        site names for the rest of the run."""
        nodes = self._wait_for_nodes(len(self.experiment.sites))
        requests = {node: content() for node in nodes}
        replies, unanswered = self._exchange(message_type, requests, self.timeouts.startup)
        reasons = list(unanswered.values())
        answers: dict[str, T | Exception] = {}
        expected = {s.name for s in self.experiment.sites}
        for node, message in replies.items():
            site = wire.site_of(message.content) if message.has_content() else None
            if site not in expected:  # cannot be attributed: its reason goes to all missing
                reasons.append(_unattributed(site, message))
                continue
            self.nodes[site] = node
            answers[site] = _decode(site, message, read)
        return {s: answers[s] if s in answers else self._missing(s, reasons) for s in sites}

    def _missing(self, site: str, reasons: list[str]) -> SiteFailure:
        """A site that never answered hello: what its supervisor reported, else why
        some node failed, else the timeout."""
        known = self.lost().get(site)
        return SiteFailure(site, known or "; ".join(dict.fromkeys(reasons)) or "no reply")

    def configure(self, preprocessor: Preprocessor, base: Params) -> None:
        """The input encoding and the whole round-0 model, sent to every site whose hello
        succeeded. A site that cannot apply them fails the run here, before round 1 (its
        own MedflError as is)."""
        text = wire.preprocessor_text(preprocessor)
        answers = self._ask(
            self.greeted, wire.CONFIGURE, lambda: wire.request(base, preprocessor=text)
        )
        for site, answer in answers.items():
            failed = _decoded(site, answer, lambda _: None)
            if isinstance(failed, MedflError):
                raise failed
            if isinstance(failed, Exception):
                raise TrainingError(f"site {site!r} could not be configured: {_reason(failed)}")

    def fit(
        self, server_round: int, params: Params, sites: list[str]
    ) -> dict[str, LocalUpdate | Exception]:
        answers = self._ask(
            sites,
            wire.FIT,
            lambda: wire.request(params, **{"server-round": server_round}),
            group=str(server_round),
        )
        return {s: _decoded(s, a, wire.update_of) for s, a in answers.items()}

    def secure_fit(self, request: SecureRequest, params: Params, sites: list[str]) -> SecureSum:
        """The round's training under SecAgg+ (Flower's workflow): the weighted mean of
        the sites' masked changes, and each site's plain metadata."""
        from medfl.fl._secagg import secure_round

        nodes = {self.nodes[s]: s for s in sites if s in self.nodes}
        secure = self.experiment.privacy.secure_aggregation
        watched = _Watched(self)
        result = secure_round(
            cast(Grid, watched), secure, request, params, nodes, self.timeouts.reply
        )
        lost = self.lost()
        for node, site in nodes.items():  # why a site dropped out, where that is known
            why = lost.get(site) or watched.unanswered.get(node)
            if isinstance(result.answers.get(site), SiteFailure) and why:
                result.answers[site] = SiteFailure(site, why)
        missing = {s: SiteFailure(s, "never answered hello") for s in sites if s not in self.nodes}
        result.answers = {s: result.answers.get(s) or missing[s] for s in sites}
        return result

    def evaluate(
        self, params: Params, split: SplitName, sites: list[str]
    ) -> dict[str, tuple[Metrics, int] | Exception]:
        answers = self._ask(sites, wire.EVALUATE, lambda: wire.request(params, split=split))
        return {s: _decoded(s, a, wire.evaluation_of) for s, a in answers.items()}

    def personalize(
        self, params: Params, sites: list[str]
    ) -> dict[str, tuple[Metrics, int] | Exception]:
        answers = self._ask(sites, wire.PERSONALIZE, lambda: wire.request(params))
        return {s: _decoded(s, a, wire.evaluation_of) for s, a in answers.items()}

    # --- StatsTransport: a federated GLM ----------------------------------------

    def stats_hello(self, sites: list[str]) -> dict[str, SiteSummary | Exception]:
        return self._first_contact(wire.STATS_HELLO, wire.summary_of, sites)

    def glm_prepare(self, plan: GlmPlan) -> dict[str, GlmStart | Exception]:
        answers = self._ask(plan.sites, wire.GLM_PREPARE, lambda: wire.glm_plan_request(plan))
        return {s: _decoded(s, a, wire.glm_start_of) for s, a in answers.items()}

    def glm_terms(self, beta: np.ndarray | None, mean_y: float) -> dict[str, GlmTerms | Exception]:
        sites = [s.name for s in self.experiment.sites]
        answers = self._ask(sites, wire.GLM_TERMS, lambda: wire.glm_terms_request(beta, mean_y))
        return {s: _decoded(s, a, wire.glm_terms_of) for s, a in answers.items()}

    def describe(self, request: DescribeRequest) -> dict[str, dict[str, Description] | Exception]:
        sites = [s.name for s in self.experiment.sites]
        answers = self._ask(sites, wire.STATS_DESCRIBE, lambda: wire.describe_request(request))
        return {s: _decoded(s, a, wire.description_of) for s, a in answers.items()}

    # --- messages -------------------------------------------------------------

    def _ask(
        self,
        sites: list[str],
        message_type: str,
        content: Callable[[], RecordDict],
        group: str = "",
    ) -> dict[str, Message | Exception]:
        """One request per site (each its own RecordDict); answers in ``sites`` order."""
        known = [s for s in sites if s in self.nodes]
        requests = {self.nodes[s]: content() for s in known}
        replies, unanswered = self._exchange(message_type, requests, self.timeouts.reply, group)
        answers: dict[str, Message | Exception] = {}
        for site in sites:
            node = self.nodes.get(site)
            if node is None:
                answers[site] = SiteFailure(site, "never answered hello")
            elif node not in replies:
                answers[site] = SiteFailure(site, unanswered[node])
            elif replies[node].has_error() and site in (lost := self.lost()):
                answers[site] = SiteFailure(site, lost[site])  # why its reply broke off
            else:
                answers[site] = replies[node]
        return answers

    def _exchange(
        self, message_type: str, requests: Mapping[int, RecordDict], timeout: float, group: str = ""
    ) -> tuple[dict[int, Message], dict[int, str]]:
        """Push, then pull until every node answered, the deadline passed, the node's
        site was reported lost, or the engine stopped. Returns the replies by node,
        and why each missing one is missing."""
        messages = [
            Message(content, node, message_type, group_id=group)
            for node, content in requests.items()
        ]
        ids = self.grid.push_messages(messages)
        pending = {mid: node for mid, node in zip(ids, requests, strict=True) if mid}
        # A node the server could not deliver to is gone; its supervisor, if any, says
        # why within a moment, else the reason is that it is not connected.
        grace = time.monotonic() + _UNDELIVERED_GRACE_SECONDS
        undelivered = {node: grace for mid, node in zip(ids, requests, strict=True) if not mid}
        replies: dict[int, Message] = {}
        unanswered: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while (pending or undelivered) and time.monotonic() < deadline and not self.stop.is_set():
            if pending:
                for message in self.grid.pull_messages(list(pending)):
                    # by the request it answers: Flower's own error replies (an object
                    # that never arrived) come from the server's node, not the site's
                    node = pending.pop(message.metadata.reply_to_message_id, None)
                    if node is not None:
                        replies[node] = message
            self._drop_lost(pending, undelivered, unanswered)
            if pending or undelivered:
                self.stop.wait(self.timeouts.poll)
        if (pending or undelivered) and self.stop.is_set():
            raise TrainingError(self.stop.reason)
        for node in requests:
            if node in undelivered:
                unanswered[node] = "the server could not deliver the request: not connected"
            elif node not in replies and node not in unanswered:
                unanswered[node] = f"no reply within {timeout:g} s"
        return replies, unanswered

    def _drop_lost(
        self, pending: dict[str, int], undelivered: dict[int, float], unanswered: dict[int, str]
    ) -> None:
        """Stop waiting for nodes whose site is reported lost, or whose grace ended."""
        now = time.monotonic()
        for late in [n for n, until in undelivered.items() if now >= until]:
            del undelivered[late]
            unanswered[late] = "the server could not deliver the request: not connected"
        for site, reason in self.lost().items():
            node = self.nodes.get(site)  # unknown before hello: the startup wait ends it
            if node is None:
                continue
            for mid in [m for m, n in pending.items() if n == node]:
                del pending[mid]
                unanswered[node] = reason
            if undelivered.pop(node, None) is not None:
                unanswered[node] = reason

    def _wait_for_nodes(self, count: int) -> list[int]:
        """Simulated nodes register while the ServerApp is already running."""
        deadline = time.monotonic() + self.timeouts.startup
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= count - len(self.lost()):  # lost sites will never connect
                return nodes
            if self.stop.is_set():
                raise TrainingError(self.stop.reason)
            if time.monotonic() >= deadline:
                raise TrainingError(
                    f"only {len(nodes)} of {count} Flower node(s) connected within "
                    f"{self.timeouts.startup:g} s"
                )
            self.stop.wait(0.05)


class _Watched:
    """The grid as SecAggPlusWorkflow sees it: each stage's messages go through the
    transport's own exchange, so a site reported lost drops out of the protocol at once
    (its neighbours' shares unmask the others) and a stopped engine ends the round."""

    def __init__(self, transport: GridTransport) -> None:
        self.transport = transport
        self.unanswered: dict[int, str] = {}  # node -> why it gave no reply at some stage

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        batch = list(messages)
        if not batch:
            return []
        first = batch[0].metadata  # a stage sends one type, one round, to distinct nodes
        requests = {m.metadata.dst_node_id: m.content for m in batch}
        wait = timeout or self.transport.timeouts.reply
        replies, unanswered = self.transport._exchange(
            first.message_type, requests, wait, first.group_id
        )
        self.unanswered.update(unanswered)
        return list(replies.values())


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, SiteFailure) else str(exc)


_FLOWER_REASON = re.compile(r"<class '([\w.]+)'>:<'(.*?)(?:'>)?$", re.DOTALL)


def _flower_error(message: Message) -> str:
    """Flower's own error reply (say, the ClientApp's process died), in one line.
    Flower writes it as "<class 'X'>:<'text'>", and Ray's text runs on for lines."""
    if not message.has_error():
        return "a reply that names no site"
    reason = message.error.reason or f"Flower error code {message.error.code}"
    found = _FLOWER_REASON.match(reason)
    if found:
        reason = f"{found[1]}: {found[2]}"
    return f"its ClientApp failed: {reason.strip().splitlines()[0]}"


def _unattributed(site: str | None, message: Message) -> str:
    """Why a node that did not name one of the experiment's sites failed."""
    if site is None:
        return _flower_error(message)
    return str(wire.error_of(site, message.content) or f"a node answered as unknown site {site!r}")


def _decode(site: str, message: Message, read: Callable[[RecordDict], T]) -> T | Exception:
    """A reply's value, or the exception it carries (the site's own, or Flower's)."""
    if message.has_error():
        return SiteFailure(site, _flower_error(message))
    return wire.error_of(site, message.content) or read(message.content)


def _decoded(
    site: str, answer: Message | Exception, read: Callable[[RecordDict], T]
) -> T | Exception:
    return answer if isinstance(answer, Exception) else _decode(site, answer, read)
