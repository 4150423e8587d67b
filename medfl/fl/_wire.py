"""How medfl's values travel in Flower messages, both directions, in one place.

The ClientApp encodes what a SiteWorker returns; GridTransport decodes it into the
very objects the in-process transport hands the federation loop. Every reply names
its site, so the server can map Flower node ids to site names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, ConfigRecordValues, MetricRecord, RecordDict

from medfl.data import Preprocessor, SiteReport, SiteSummary
from medfl.errors import (
    BudgetSpent,
    DataError,
    DisclosureRefusal,
    MedflError,
    PrivacyRefusal,
    TrainingError,
)
from medfl.privacy import PrivacyResume, PrivacySpent
from medfl.stats import GlmTerms
from medfl.stats._describe import Description
from medfl.stats._site import DescribeRequest, GlmPlan, GlmStart
from medfl.training import EmptySiteError, LocalUpdate, Metrics, Params, SiteFailure, SiteHello

# Message types: Flower routes "<category>.<action>" to the handler registered for it.
HELLO = "query.hello"
CONFIGURE = "query.configure"
FIT = "train"
EVALUATE = "evaluate"
PERSONALIZE = "query.personalize"
STATS_HELLO = "query.stats_hello"
GLM_PREPARE = "query.glm_prepare"
GLM_TERMS = "query.glm_terms"
STATS_DESCRIBE = "query.stats_describe"

_SITE = "medfl"  # ConfigRecord in every reply: which site answered
_ERROR = "error"  # ConfigRecord in a reply whose site raised
_PARAMS = "params"
_CONFIG = "config"

# Errors a site may raise on purpose, rebuilt as the same type at the server.
_SITE_ERRORS: dict[str, type[DataError]] = {
    "EmptySiteError": EmptySiteError,
    "DataError": DataError,
    "DisclosureRefusal": DisclosureRefusal,
    "PrivacyRefusal": PrivacyRefusal,
    "BudgetSpent": BudgetSpent,
}


# --- parameters and requests --------------------------------------------------


def params_record(params: Params) -> ArrayRecord:
    """Arrays in order, dtype and bytes kept (np.save inside): no float32/64 drift."""
    return ArrayRecord(numpy_ndarrays=[np.asarray(p) for p in params])


def params_of(content: RecordDict) -> Params:
    return content.array_records[_PARAMS].to_numpy_ndarrays()


def request(params: Params | None = None, **config: str | int) -> RecordDict:
    content = RecordDict()
    if params is not None:
        content[_PARAMS] = params_record(params)
    content[_CONFIG] = ConfigRecord(dict(config))
    return content


def config_of(content: RecordDict) -> ConfigRecord:
    return content.config_records[_CONFIG]


# --- replies ------------------------------------------------------------------


def reply(site: str, **records: ArrayRecord | ConfigRecord | MetricRecord) -> RecordDict:
    content = RecordDict()
    content[_SITE] = ConfigRecord({"site": site})
    for name, record in records.items():
        content[name] = record
    return content


def site_of(content: RecordDict) -> str | None:
    record = content.config_records.get(_SITE)
    return str(record["site"]) if record is not None else None


def hello_request(resume: Mapping[str, PrivacyResume] | None) -> RecordDict:
    """The hello; a resumed run's carries each site's DP as the server knew it. Node ids
    are not yet mapped to sites, so every node gets the whole map and takes its own."""
    if not resume:
        return RecordDict()
    content = RecordDict()
    text = json.dumps({site: r.to_dict() for site, r in resume.items()})
    content[_CONFIG] = ConfigRecord({"privacy-resume": text})
    return content


def resume_of(content: RecordDict, site: str) -> PrivacyResume | None:
    """This site's part of a resumed run's hello, if any."""
    record = content.config_records.get(_CONFIG)
    if record is None or "privacy-resume" not in record:
        return None
    mine = json.loads(str(record["privacy-resume"])).get(site)
    return None if mine is None else PrivacyResume.from_dict(mine)


def hello_reply(site: str, hello: SiteHello) -> RecordDict:
    text: dict[str, ConfigRecordValues] = {
        "summary": hello.summary.to_json(),
        "report": json.dumps(hello.report.to_dict()),
    }
    if hello.privacy is not None:  # floats in JSON: repr round-trips them exactly
        text["privacy"] = json.dumps(hello.privacy.to_dict())
    if hello.privacy_run is not None:
        text["privacy-run"] = hello.privacy_run
    return reply(site, hello=ConfigRecord(text))


def hello_of(content: RecordDict) -> SiteHello:
    record = content.config_records["hello"]
    summary = SiteSummary.from_json(str(record["summary"]))
    report = SiteReport.from_dict(json.loads(str(record["report"])))
    run = record.get("privacy-run")
    plan = _plan_of(record.get("privacy"))
    return SiteHello(summary, report, plan, None if run is None else str(run))


def _plan_of(text: object) -> Any:
    if text is None:
        return None
    from medfl.privacy._plan import PrivacyPlan

    return PrivacyPlan.from_dict(json.loads(str(text)))


def preprocessor_text(preprocessor: Preprocessor) -> str:
    return json.dumps(preprocessor.to_dict())


def preprocessor_of(text: str) -> Preprocessor:
    return Preprocessor.from_dict(json.loads(text))


def update_reply(site: str, update: LocalUpdate) -> RecordDict:
    fields: dict[str, Any] = {
        "num-examples": update.num_examples,
        "loss": float(update.loss),
        "steps": update.steps,
    }
    if update.problem is not None:  # a ConfigRecord cannot hold None: absent means none
        fields["problem"] = update.problem
    if update.privacy is not None:
        fields["privacy"] = json.dumps(update.privacy.to_dict())
    return reply(site, params=params_record(update.params), update=ConfigRecord(fields))


def update_of(content: RecordDict) -> LocalUpdate:
    record = content.config_records["update"]
    problem = record.get("problem")
    spent = record.get("privacy")
    return LocalUpdate(
        params=params_of(content),
        num_examples=int(record["num-examples"]),  # type: ignore[arg-type]
        loss=float(record["loss"]),  # type: ignore[arg-type]
        steps=int(record["steps"]),  # type: ignore[arg-type]
        problem=None if problem is None else str(problem),
        privacy=None if spent is None else PrivacySpent.from_dict(json.loads(str(spent))),
    )


def evaluation_reply(site: str, metrics: Metrics, num_examples: int) -> RecordDict:
    """A MetricRecord cannot hold None: only defined metrics go in it, and the names
    of all of them (in order) go alongside, so undefined ones come back as None."""
    defined = {k: float(v) for k, v in metrics.items() if v is not None}
    info = ConfigRecord({"num-examples": num_examples, "metric-names": json.dumps(list(metrics))})
    return reply(site, metrics=MetricRecord(defined), evaluation=info)  # type: ignore[arg-type]


def evaluation_of(content: RecordDict) -> tuple[Metrics, int]:
    info = content.config_records["evaluation"]
    defined = content.metric_records["metrics"]
    names = json.loads(str(info["metric-names"]))
    metrics: Metrics = {n: float(defined[n]) if n in defined else None for n in names}  # type: ignore[arg-type]
    return metrics, int(info["num-examples"])  # type: ignore[arg-type]


# --- federated GLM ------------------------------------------------------------


def summary_reply(site: str, summary: SiteSummary) -> RecordDict:
    return reply(site, summary=ConfigRecord({"json": summary.to_json()}))


def summary_of(content: RecordDict) -> SiteSummary:
    return SiteSummary.from_json(str(content.config_records["summary"]["json"]))


def glm_plan_request(plan: GlmPlan) -> RecordDict:
    text = json.dumps({"vocabulary": plan.vocabulary, "sites": plan.sites})
    return request(plan=text)


def glm_plan_text(content: RecordDict) -> str:
    return str(config_of(content)["plan"])


def glm_plan_of(text: str) -> GlmPlan:
    d = json.loads(text)
    return GlmPlan(d["vocabulary"], d["sites"])


def glm_start_reply(site: str, start: GlmStart) -> RecordDict:
    fields: dict[str, ConfigRecordValues] = {"rows": start.rows}
    if start.outcome_sum is not None:
        fields["outcome-sum"] = start.outcome_sum
    return reply(site, start=ConfigRecord(fields))


def glm_start_of(content: RecordDict) -> GlmStart:
    record = content.config_records["start"]
    total = record.get("outcome-sum")
    return GlmStart(int(record["rows"]), None if total is None else float(total))  # type: ignore[arg-type]


def glm_terms_request(beta: np.ndarray | None, mean_y: float) -> RecordDict:
    """``beta`` None: the starting step (no coefficients yet)."""
    content = request(None if beta is None else [beta])
    content[_CONFIG] = ConfigRecord({"mean-y": float(mean_y)})  # a float64 travels exactly
    return content


def glm_terms_args(content: RecordDict) -> tuple[np.ndarray | None, float]:
    beta = params_of(content)[0] if _PARAMS in content.array_records else None
    return beta, float(config_of(content)["mean-y"])  # type: ignore[arg-type]


def glm_terms_reply(site: str, terms: GlmTerms) -> RecordDict:
    sums = ConfigRecord(
        {
            "deviance": terms.deviance,
            "pearson": terms.pearson,
            "loglik": terms.loglik,
            "n": terms.n,
            "edge": terms.edge,
        }
    )
    return reply(site, params=params_record([terms.xtwx, terms.xtwz]), sums=sums)


def glm_terms_of(content: RecordDict) -> GlmTerms:
    xtwx, xtwz = params_of(content)
    sums = content.config_records["sums"]
    return GlmTerms(
        xtwx,
        xtwz,
        deviance=float(sums["deviance"]),  # type: ignore[arg-type]
        pearson=float(sums["pearson"]),  # type: ignore[arg-type]
        loglik=float(sums["loglik"]),  # type: ignore[arg-type]
        n=int(sums["n"]),  # type: ignore[arg-type]
        edge=int(sums["edge"]),  # type: ignore[arg-type]
    )


def describe_request(asked: DescribeRequest) -> RecordDict:
    return request(describe=asked.to_json())


def describe_request_of(content: RecordDict) -> DescribeRequest:
    return DescribeRequest.from_json(str(config_of(content)["describe"]))


def description_reply(site: str, groups: dict[str, Description]) -> RecordDict:
    text = json.dumps({g: d.to_dict() for g, d in groups.items()})
    return reply(site, description=ConfigRecord({"json": text}))


def description_of(content: RecordDict) -> dict[str, Description]:
    groups = json.loads(str(content.config_records["description"]["json"]))
    return {g: Description.from_dict(d) for g, d in groups.items()}


# --- errors -------------------------------------------------------------------


def error_reply(site: str, exc: Exception) -> RecordDict:
    """What a site raised, as data: its type (for the errors the server tells apart)
    and the user-facing message. Other exceptions read as the in-process engine's."""
    if isinstance(exc, MedflError):
        fields: dict[str, str] = {"kind": type(exc).__name__, "message": str(exc)}
        for attr in ("site", "column"):
            value = getattr(exc, attr, None)
            if value is not None:
                fields[attr] = str(value)
    else:
        fields = {"kind": "failure", "message": f"{type(exc).__name__}: {exc}"}
    return reply(site, error=ConfigRecord(fields))  # type: ignore[arg-type]


def error_of(site: str, content: RecordDict) -> Exception | None:
    """The exception a site's reply carries, rebuilt as the same type; None if none."""
    record = content.config_records.get(_ERROR)
    if record is None:
        return None
    kind, message = str(record["kind"]), str(record["message"])
    if kind in _SITE_ERRORS:
        where = {k: str(record[k]) for k in ("site", "column") if k in record}
        return _SITE_ERRORS[kind](message, **where)
    if kind == "TrainingError":
        return TrainingError(message)
    if kind == "failure":
        return SiteFailure(site, message)
    return MedflError(message)  # another MedflError: keep its message, the base type
