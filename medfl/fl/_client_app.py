"""The ClientApp: one site's SiteWorker behind Flower messages.

Ray reuses its actors, and any actor may get any site's message, so workers are
cached per process by (run, spec, site) and rebuilt on demand: a worker that never
saw this site's ``configure`` reads the preprocessor the node keeps in its Context
state and repeats hello + configure, which are deterministic. What a site computes
is exactly what the fast engine's SiteWorker computes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from medfl.errors import SpecError
from medfl.fl import _wire as wire
from medfl.fl._secagg import answer_securely, is_secure
from medfl.spec import Experiment, SecureAggregation, parse_experiment, with_site_data
from medfl.spec._policy import SitePolicy, load_policy
from medfl.stats._site import StatsSite
from medfl.training import LocalUpdate, Params, SiteWorker

T = TypeVar("T")
RUN_CONFIG_KEY = "medfl-experiment"  # where a deployed run carries the spec (JSON)
# The node's Context.state records: they outlive a process (Ray reuses actors for any
# node), so a fresh worker rebuilds the site from them.
_STATE = "medfl"  # the federation's preprocessor
_BASE = "medfl-base"  # the whole round-0 model (frozen and local layers come only here)
_LOCAL = "medfl-local"  # this site's own layers (personalization), after its last round
_PRIVACY = "medfl-privacy"  # this site's accountant (DP) and ledger key, after its last round


@dataclass
class _Site:
    worker: SiteWorker
    said_hello: bool = False
    preprocessor: str | None = None  # JSON the worker is configured with


# Per process (a Ray actor, a SuperNode's app process): parsed specs and site workers.
_SPECS: dict[str, Experiment] = {}
_SITES: dict[tuple[int, str, str], _Site] = {}


def _experiment(text: str) -> tuple[str, Experiment]:
    """Parse the spec once per process (the boundary), keyed by its digest."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest not in _SPECS:
        _SPECS.clear()  # one experiment at a time per process
        _SPECS[digest] = parse_experiment(json.loads(text), "run config")
    return digest, _SPECS[digest]


def _site_name(experiment: Experiment, context: Context) -> str:
    """A deployed SuperNode may name its site; a simulated one has a partition id."""
    named = context.node_config.get("site")
    if named is not None:
        names = [s.name for s in experiment.sites]
        if str(named) not in names:
            raise SpecError(
                [
                    (
                        "sites",
                        f"this site process is named {str(named)!r} (medfl site --name), "
                        f"but the experiment's sites are {names}: one of the two is misspelt",
                    )
                ]
            )
        return str(named)
    return experiment.sites[int(context.node_config["partition-id"])].name  # type: ignore[call-overload]


def _this_site(
    cache: dict[tuple[int, str, str], T], spec_text: str, context: Context,
    policies: Mapping[str, Path], build: Callable[[Experiment, str, SitePolicy | None], T],
) -> tuple[str, T]:  # fmt: skip
    """This node's site object for this run, built once per process (from the site's
    own data file where it names one, medfl site --data; with its own policy file,
    medfl site --policy, or a simulated site's from ``policies``)."""
    digest, experiment = _experiment(spec_text)
    name = _site_name(experiment, context)
    key = (context.run_id, digest, name)
    if key not in cache:
        for old in [k for k in cache if k[:2] != key[:2]]:
            del cache[old]  # a finished run's data must not linger in a reused process
        local = context.node_config.get("data")
        if local:
            experiment = with_site_data(experiment, name, str(local))
        policy = context.node_config.get("policy") or policies.get(name)
        cache[key] = build(experiment, name, load_policy(str(policy)) if policy else None)
    return name, cache[key]


def _site(spec_text: str, context: Context, policies: Mapping[str, Path]) -> tuple[str, _Site]:
    def build(experiment: Experiment, name: str, policy: SitePolicy | None) -> _Site:
        _single_thread()
        return _Site(SiteWorker(experiment, name, policy=policy))

    return _this_site(_SITES, spec_text, context, policies, build)


def _single_thread() -> None:
    """One torch thread, as the fast engine uses: bit-identical and faster for tiny models."""
    import torch

    torch.set_num_threads(1)


def _ready(site: _Site, context: Context) -> SiteWorker:
    """The worker, configured as the server configured this node, with its own layers."""
    record = context.state.config_records.get(_STATE)
    base = context.state.array_records.get(_BASE)
    if record is None or base is None:
        raise RuntimeError("fit/evaluate before the server configured this site")
    text = str(record["preprocessor"])
    kept = context.state.config_records.get(_PRIVACY)
    if kept is not None:  # before a repeated hello: its budget check excludes this run
        site.worker.load_privacy_state(json.loads(str(kept["state"])))
    if site.preprocessor != text:
        if not site.said_hello:
            site.worker.hello()  # loads and splits this site's data
            site.said_hello = True
        site.worker.configure(wire.preprocessor_of(text), base.to_numpy_ndarrays())
        site.preprocessor = text
    local = context.state.array_records.get(_LOCAL)
    if local is not None:
        site.worker.load_local_params(local.to_numpy_ndarrays())
    return site.worker


# The site's name and its worker, from the spec, the node and the simulated sites' policies.
Lookup = Callable[[str, Context, Mapping[str, Path]], tuple[str, Any]]
Handler = Callable[[str, Any, RecordDict, Context], RecordDict]


def _answer(
    lookup: Callable[[str, Context], tuple[str, Any]],
    spec_text: str,
    message: Message,
    context: Context,
    handle: Handler,
) -> Message:
    """Run one handler; whatever the site raises goes back as data naming the site."""
    name = f"partition {context.node_config.get('partition-id')}"
    try:
        name, site = lookup(spec_text, context)
        content = handle(name, site, message.content, context)
    except Exception as exc:  # a site's failure is the server's to judge, never a crash
        content = wire.error_reply(name, exc)
    return Message(content, reply_to=message)


def _hello(name: str, site: _Site, content: RecordDict, context: Context) -> RecordDict:
    site.said_hello, site.preprocessor = False, None  # not ready until hello succeeds
    if _PRIVACY in context.state.config_records:
        del context.state[_PRIVACY]  # a new hello starts a new run's accountant
    hello = site.worker.hello(wire.resume_of(content, name))  # or a resumed run's, as it was
    site.said_hello = True
    _keep_privacy(site.worker, context)
    return wire.hello_reply(name, hello)


def _keep_privacy(worker: SiteWorker, context: Context) -> None:
    """The accountant outlives the process: a fresh one resumes it from the node's state."""
    context.state[_PRIVACY] = ConfigRecord({"state": json.dumps(worker.privacy_state())})


def _configure(name: str, site: _Site, content: RecordDict, context: Context) -> RecordDict:
    text = str(wire.config_of(content)["preprocessor"])
    context.state[_STATE] = ConfigRecord({"preprocessor": text})
    context.state[_BASE] = wire.params_record(wire.params_of(content))
    if _LOCAL in context.state.array_records:
        del context.state[_LOCAL]  # a new configure starts the site's own layers afresh
    site.preprocessor = None
    _ready(site, context)
    return wire.reply(name)


def _fit(name: str, site: _Site, content: RecordDict, context: Context) -> RecordDict:
    server_round = int(wire.config_of(content)["server-round"])  # type: ignore[arg-type]
    site.worker.privacy.check_plain_update()
    return wire.update_reply(name, _train(site, context, server_round, wire.params_of(content)))


def _train(site: _Site, context: Context, server_round: int, params: Params) -> LocalUpdate:
    """One round's local training, plain or under SecAgg+'s masks."""
    worker = _ready(site, context)
    try:
        update = worker.fit(server_round, params)
    finally:  # steps taken count, even when the round then failed
        _keep_privacy(worker, context)
    if worker.keeps_local:
        context.state[_LOCAL] = wire.params_record(worker.local_params())
    return update


def _secure_trainer(
    spec: Callable[[Context], str], policies: Mapping[str, Path]
) -> Callable[[Context, int, Params], tuple[str, LocalUpdate, SecureAggregation]]:
    def train(
        context: Context, server_round: int, params: Params
    ) -> tuple[str, LocalUpdate, SecureAggregation]:
        text = spec(context)
        name, site = _site(text, context, policies)
        update = _train(site, context, server_round, params)
        return name, update, _experiment(text)[1].privacy.secure_aggregation

    return train


def _evaluate(name: str, site: _Site, content: RecordDict, context: Context) -> RecordDict:
    split = str(wire.config_of(content)["split"])
    metrics, n = _ready(site, context).evaluate(wire.params_of(content), split)  # type: ignore[arg-type]
    return wire.evaluation_reply(name, metrics, n)


def _personalize(name: str, site: _Site, content: RecordDict, context: Context) -> RecordDict:
    metrics, n = _ready(site, context).personalize(wire.params_of(content))
    return wire.evaluation_reply(name, metrics, n)


# --- a federated GLM: the site's StatsSite, rebuilt from the node's state when needed -----

_STATS_SITES: dict[tuple[int, str, str], StatsSite] = {}
_GLM_PLAN = "medfl-glm-plan"  # the plan the server sent, for a process that never saw it


def _stats_site(
    spec_text: str, context: Context, policies: Mapping[str, Path]
) -> tuple[str, StatsSite]:
    return _this_site(_STATS_SITES, spec_text, context, policies, StatsSite)


def _stats_hello(name: str, site: StatsSite, _: RecordDict, context: Context) -> RecordDict:
    return wire.summary_reply(name, site.hello())


def _glm_prepare(name: str, site: StatsSite, content: RecordDict, context: Context) -> RecordDict:
    text = wire.glm_plan_text(content)
    start = site.prepare(
        wire.glm_plan_of(text)
    )  # refuses, naming the limit, before anything is kept
    context.state[_GLM_PLAN] = ConfigRecord({"plan": text})
    return wire.glm_start_reply(name, start)


def _glm_terms(name: str, site: StatsSite, content: RecordDict, context: Context) -> RecordDict:
    if not site.prepared:
        record = context.state.config_records.get(_GLM_PLAN)
        if record is None:
            raise RuntimeError("GLM sums asked for before the plan")
        site.prepare(wire.glm_plan_of(str(record["plan"])))
    beta, mean_y = wire.glm_terms_args(content)
    return wire.glm_terms_reply(name, site.terms(beta, mean_y))


def _stats_describe(
    name: str, site: StatsSite, content: RecordDict, context: Context
) -> RecordDict:
    return wire.description_reply(name, site.describe(wire.describe_request_of(content)))


def make_client_app(
    spec_text: str | None = None, policies: Mapping[str, Path] | None = None
) -> ClientApp:
    """The ClientApp for one experiment (its spec as JSON), or, without one, for the
    spec a deployed run carries in its run config under ``medfl-experiment``.
    ``policies``: simulated sites' policy files (a deployed site names its own)."""
    app = ClientApp()
    files = dict(policies or {})

    def spec(context: Context) -> str:
        return spec_text if spec_text is not None else str(context.run_config[RUN_CONFIG_KEY])

    def handler(lookup: Lookup, handle: Handler) -> Callable[[Message, Context], Message]:
        def site(text: str, context: Context) -> tuple[str, Any]:
            return lookup(text, context, files)

        def answer(message: Message, context: Context) -> Message:
            return _answer(site, spec(context), message, context, handle)

        return answer

    for name, (lookup, handle) in _QUERIES.items():  # message type "query.<name>"
        app.query(name)(handler(lookup, handle))
    plain = handler(_site, _fit)
    trainer = _secure_trainer(spec, files)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        if is_secure(message):  # a SecAgg+ stage: Flower's mod runs it, we train inside
            return answer_securely(message, context, trainer)
        return plain(message, context)

    app.evaluate()(handler(_site, _evaluate))
    return app


_QUERIES: dict[str, tuple[Lookup, Handler]] = {
    "hello": (_site, _hello),
    "configure": (_site, _configure),
    "personalize": (_site, _personalize),
    "stats_hello": (_stats_site, _stats_hello),
    "glm_prepare": (_stats_site, _glm_prepare),
    "glm_terms": (_stats_site, _glm_terms),
    "stats_describe": (_stats_site, _stats_describe),
}
