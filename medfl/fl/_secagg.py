"""SecAgg+ over Flower: the server's side runs Flower's SecAggPlusWorkflow for one
round, the site's side answers through Flower's secaggplus_mod.

The workflow speaks Flower's legacy API (a Strategy, FitIns and FitRes), so one
round's request goes in as FitIns and a tiny Strategy keeps what comes back: each
site's FitRes carries its plain metadata (metrics) and, once unmasked, the sum shared
by all. The site's FitRes holds its masked vector in place of a model; secaggplus_mod
quantises and masks it before it leaves, and no array a site sends reaches the server
unmasked.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

from medfl.errors import TrainingError
from medfl.fl import _wire as wire
from medfl.spec import SecureAggregation
from medfl.training import LocalUpdate, Params, SiteFailure
from medfl.training._secure import (
    Contribution,
    SecureRequest,
    SecureSum,
    contribution,
    metadata,
    nothing,
    update_from,
)

_MODULUS = 2**32  # SecAgg+'s masks are drawn modulo this (Flower's largest)
_PROTOCOL_MODULES = {"secaggplus_workflow", "secaggplus_mod"}


class _QuietProtocol(logging.Filter):
    """Flower logs every stage of every site at INFO and DEBUG; medfl reports the round.
    Warnings and errors still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.module not in _PROTOCOL_MODULES


logging.getLogger("flwr").addFilter(_QuietProtocol())

_MASK_DOMAIN = b"medfl-secagg-masks-v1"


def masks(seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]) -> list[Any]:
    """SecAgg+'s masks from the whole seed: SHAKE-256 of it, read as integers in
    [0, num_range) (a power of 2, at most 2**32). Flower 1.42's own generator folds the
    seed to 32 bits and draws with Mersenne Twister (flwrlabs/flower#7522, open), so a
    server could search a site's masks out offline; both of medfl's ends use this one."""
    if num_range & (num_range - 1) or not 0 < num_range <= 2**32:
        raise ValueError(f"the masks' range {num_range} is not a power of 2 up to 2**32")
    sizes = [math.prod(shape) for shape in dimensions_list]
    stream = hashlib.shake_256(_MASK_DOMAIN + seed).digest(4 * sum(sizes))
    values = np.frombuffer(stream, dtype="<u4").astype(np.int64) & (num_range - 1)
    out, start = [], 0
    for shape, size in zip(dimensions_list, sizes, strict=True):
        out.append(values[start : start + size].reshape(shape))
        start += size
    return out


for _module in (
    "flwr.client.mod.secure_aggregation.secaggplus_mod",
    "flwr.server.workflow.secure_aggregation.secaggplus_workflow",
):  # the names Flower's two ends call their generator by
    setattr(importlib.import_module(_module), "pseudo_rand_gen", masks)  # noqa: B010


def is_secure(message: Message) -> bool:
    """A SecAgg+ stage (Flower's workflow), not medfl's plain training request."""
    return RECORD_KEY_CONFIGS in message.content.config_records


# --- the server's side ---------------------------------------------------------


class _OneRound(Strategy):
    """The legacy Strategy SecAggPlusWorkflow drives: it hands out this round's FitIns
    and keeps the FitRes that come back (each with the unmasked mean in it)."""

    def __init__(self, fitins: dict[int, FitIns], grid: Grid) -> None:
        self.proxies = {node: GridClientProxy(node, grid, 0) for node in fitins}
        self.fitins = fitins
        self.results: list[tuple[ClientProxy, FitRes]] | None = None

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return [(self.proxies[node], ins) for node, ins in self.fitins.items()]

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> tuple[None, dict]:
        self.results = list(results)
        return None, {}

    def initialize_parameters(self, client_manager: ClientManager) -> None:
        return None

    def configure_evaluate(self, *_: Any) -> list[Any]:
        return []

    def aggregate_evaluate(self, *_: Any) -> tuple[None, dict]:
        return None, {}

    def evaluate(self, *_: Any) -> None:
        return None


class _Workflow(SecAggPlusWorkflow):
    """Flower's workflow, saying where it stopped; and it unmasks nothing unless at
    least 2 sites put a non-zero weight under the masks (else the "sum" is one site's)."""

    halted: str | None = None

    def __call__(self, grid: Grid, context: Context) -> None:
        state = WorkflowState()
        stages = (
            ("setup", self.setup_stage),
            ("share keys", self.share_keys_stage),
            ("collect masked vectors", self.collect_masked_vectors_stage),
            ("unmask", self.unmask_stage),
        )
        for name, stage in stages:
            if not stage(grid, context, state):  # type: ignore[arg-type]
                self.halted = self.halted or (
                    f"at its {name} stage: {len(state.active_node_ids)} of "
                    f"{len(state.sampled_node_ids)} site(s) answered, and each site needs "
                    f"{state.threshold} neighbour(s) answering"
                )
                return

    def collect_masked_vectors_stage(
        self, grid: Grid, context: LegacyContext, state: WorkflowState
    ) -> bool:
        if not super().collect_masked_vectors_stage(grid, context, state):
            return False
        # the weight each site put under the masks, as secaggplus_mod quantises it
        quantised = [
            round(res.num_examples / self.max_weight * self.quantization_range)
            for _, res in state.legacy_results
        ]
        weighted = [q for q in quantised if q > 0]
        if len(weighted) < 2:
            self.halted = (
                f"before unmasking: only {len(weighted)} site(s) sent a usable update, and "
                "the sum of fewer than 2 would be one site's own"
            )
            return False
        return True


def secure_round(
    grid: Grid,
    secure: SecureAggregation,
    request: SecureRequest,
    params: Params,
    nodes: dict[int, str],
    timeout: float,
) -> SecureSum:
    """One round of SecAgg+ over the sites at ``nodes`` (node id -> site)."""
    if len(nodes) < 2:
        raise TrainingError(
            f"round {request.server_round}: secure aggregation needs at least 2 sites "
            f"training, and {len(nodes)} can ({', '.join(nodes.values()) or 'none'}): one "
            "site's sum would be its own update"
        )
    fitins = FitIns(ndarrays_to_parameters(params), request.to_config())  # type: ignore[arg-type]
    strategy = _OneRound(dict.fromkeys(nodes, fitins), grid)
    context = LegacyContext(Context(0, 0, {}, RecordDict(), {}), strategy=strategy)
    context.state[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WorkflowKey.CURRENT_ROUND: request.server_round}
    )
    context.state[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(fitins.parameters, True)
    workflow = _Workflow(
        num_shares=secure.share_fraction,
        reconstruction_threshold=secure.reconstruction_threshold,
        max_weight=request.max_weight,
        clipping_range=secure.clipping_range,
        quantization_range=2**secure.quantization_bits,
        modulus_range=_MODULUS,
        timeout=timeout,
    )
    workflow(grid, context)
    if workflow.halted is not None or not strategy.results:
        raise TrainingError(
            f"round {request.server_round}: secure aggregation stopped "
            f"{workflow.halted or 'without a result'}; the server learnt no sum"
        )
    return _sum(strategy.results, nodes)


def _sum(results: list[tuple[ClientProxy, FitRes]], nodes: dict[int, str]) -> SecureSum:
    answers: dict[str, LocalUpdate | Exception] = {}
    clipped: dict[str, int] = {}
    weight = 0
    for proxy, res in results:
        site = nodes[int(proxy.node_id)]
        metrics = res.metrics
        if "medfl-error" in metrics:
            error = wire.error_of(
                site, wire.reply(site, error=ConfigRecord(json.loads(str(metrics["medfl-error"]))))
            )
            answers[site] = error or SiteFailure(site, "an unreadable error")
            continue
        update, site_weight, clipped[site] = update_from(str(metrics["medfl-update"]))
        answers[site], weight = update, weight + site_weight
    for site in nodes.values():
        answers.setdefault(site, SiteFailure(site, "dropped out of secure aggregation"))
    mean = parameters_to_ndarrays(results[0][1].parameters)
    ordered = {s: answers[s] for s in nodes.values()}
    return SecureSum(mean, weight, ordered, clipped)


# --- the site's side ---------------------------------------------------------------


Train = Callable[[Context, int, Params], tuple[str, LocalUpdate, SecureAggregation]]


def answer_securely(message: Message, context: Context, train: Train) -> Message:
    """A SecAgg+ stage: Flower's mod runs the protocol and, at the stage that collects
    the masked vectors, asks ``train`` (this site's plain training) for the update."""

    def inner(inner_message: Message, inner_context: Context) -> Message:
        fitins = compat.recorddict_to_fitins(inner_message.content, keep_input=True)
        current = parameters_to_ndarrays(fitins.parameters)
        request = SecureRequest.from_config(dict(fitins.config))
        part, metrics = _contribute(inner_context, request, current, train)
        fitres = FitRes(
            Status(Code.OK, ""), ndarrays_to_parameters(part.vector), part.weight, metrics
        )
        return Message(
            compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=inner_message
        )

    return secaggplus_mod(message, context, inner)


def _contribute(
    context: Context, request: SecureRequest, current: Params, train: Train
) -> tuple[Contribution, dict[str, Any]]:
    """The site's vector and its plain metadata; whatever fails goes back as an error
    beside zeros of weight 0, so the other sites' masks still cancel."""
    # until the site is known: a deployed node's name, or a simulated one's partition
    name = str(
        context.node_config.get("site") or f"partition {context.node_config.get('partition-id')}"
    )
    try:
        name, update, secure = train(context, request.server_round, current)
        part = contribution(update, current, request, secure)
        return part, metadata(name, update, part)
    except Exception as exc:  # the server judges a site's failure; it never crashes here
        fields = dict(wire.error_reply(name, exc).config_records["error"])
        return nothing(current, request), {"medfl-site": name, "medfl-error": json.dumps(fields)}
