"""One run from start to result directory, whatever carries the messages.

Both engines call ``drive``: the fast engine in this thread, Flower's inside its
ServerApp. A failure keeps every finished round in result.json with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medfl.errors import MedflError, UsageError
from medfl.privacy import PrivacyResume
from medfl.results._model import PrivacyReport, RoundRecord, RunResult, SitePrivacyReport
from medfl.results._store import RunStore
from medfl.runners._baselines import compute_baselines
from medfl.spec import Experiment
from medfl.spec._policy import SitePolicy
from medfl.training import (
    Checkpoint,
    Federation,
    Params,
    ServerOptimizer,
    Setup,
    SiteHello,
    Transport,
)

log = logging.getLogger("medfl.run")

Progress = Callable[[RoundRecord], None]
TRIAL_NOTE = (
    "a search's trial: scored on the validation splits only; no test split was read, no model kept"
)


@dataclass
class DriveOptions:
    engine: str = "fast"
    resume: bool = False
    baselines: bool = True
    progress: Progress | None = None
    no_baselines_because: str | None = None  # said in result.json when baselines are off
    policies: dict[str, SitePolicy] = field(default_factory=dict)  # simulated sites' own
    # A search's trial: scored on the validation rounds only. No test split is read, and
    # no checkpoint, model or baseline is made (the best configuration's own run does).
    validation_only: bool = False


Saved = tuple[Params, dict[str, Any], list[RoundRecord]]  # RunStore.load_checkpoint()


def site_resumes(
    before: RunResult | None, saved: Saved | None, experiment: Experiment
) -> dict[str, PrivacyResume] | None:
    """With privacy.mode local, what a resumed run tells each site of its DP so far
    (result.json's ``privacy.sites``): the site continues that accounting. A round
    result.json has and the checkpoint lacks runs again, and its steps count again:
    the update it released was seen."""
    if before is None or saved is None or not experiment.privacy.local:
        return None
    sites = before.privacy.sites if before.privacy is not None else {}
    resumes = {}
    for name, report in sites.items():
        if report.run is None:
            raise UsageError(
                f"cannot resume: result.json names no ledger key for site {name!r}'s DP "
                "(a run from before medfl resumed privacy.mode 'local'); start a new run"
            )
        resumes[name] = PrivacyResume(
            run=report.run,
            steps=report.steps,
            epsilon=report.epsilon,
            noise_multiplier=report.noise_multiplier,
            sample_rate=report.sample_rate,
            rounds_done=len(saved[2]),
        )
    return resumes


def _start(setup: Setup, before: RunResult | None, saved: Saved | None) -> Checkpoint:
    if before is None or saved is None:
        return Checkpoint(setup.start.initial(), {}, [])
    _check_same_source(before, setup)
    if setup.start.parts.local:
        setup.notes.append(
            "resumed: the sites' own layers (personalization) restarted from the starting "
            "model, as the server does not hold them"
        )
    params, optimizer, rounds = saved
    central = before.privacy.central if before.privacy is not None else None
    sites = before.privacy.sites if before.privacy is not None else {}
    stopped = {n: r.stopped for n, r in sites.items() if r.stopped is not None}
    return Checkpoint(params, optimizer, rounds, central=central, stopped=stopped)


def _check_same_source(before: RunResult, setup: Setup) -> None:
    """The frozen and local layers come from the pretrained file again: it must not
    have changed since the run began."""
    was = before.model.pretrained if before.model else None
    now = setup.start.info.pretrained
    if was and now and was.sha256 != now.sha256:
        raise UsageError(
            f"cannot resume: {now.path} changed since this run began (sha256 {was.sha256[:12]}… "
            f"then, {now.sha256[:12]}… now)"
        )


def _record_setup(result: RunResult, setup: Setup, experiment: Experiment) -> None:
    result.sites = {n: h.report.to_dict() for n, h in setup.hellos.items()}
    result.excluded_sites = setup.excluded
    result.features = setup.preprocessor.feature_names
    result.model = setup.start.info
    result.notes += setup.notes
    result.privacy = _privacy_report(experiment, setup.hellos, setup.start.repairs)
    privacy = experiment.privacy
    secure = privacy.secure_aggregation
    if secure.enabled:
        from medfl.privacy import secured
        from medfl.training._secure import describe

        result.secure_aggregation = describe(secure, len(setup.active), privacy.central)
        if result.privacy is not None:
            result.privacy.secure_aggregation = True
            result.privacy.scope = secured(result.privacy.scope)


def _carry_privacy(result: RunResult, before: RunResult, experiment: Experiment) -> None:
    """A resumed run's per-site DP starts where result.json left it, so a run cut again
    before its next round still reports every step taken; a site that takes no part now
    keeps the figures it had."""
    if result.privacy is None or before.privacy is None:
        return
    for name, was in before.privacy.sites.items():
        now = result.privacy.sites.get(name)
        if now is None:
            result.privacy.sites[name] = was
            result.notes.append(
                f"resumed: site {name!r} takes no part in the rounds after {len(before.rounds)}; "
                f"its ε = {was.epsilon:.3f} from the rounds before is kept"
            )
            continue
        for field_name in ("epsilon", "steps", "rounds_contributed", "stopped"):
            setattr(now, field_name, getattr(was, field_name))
        if was.stopped is not None:  # it stays stopped: the run says so again
            result.notes.append(_stopped_note(was.stopped, experiment))


def _privacy_report(
    experiment: Experiment, hellos: dict[str, SiteHello], repairs: list[str]
) -> PrivacyReport | None:
    """Each site's plan, as it said in its hello; ε and steps fill in round by round."""
    from medfl.privacy import SCOPE
    from medfl.privacy._plan import MECHANISM

    privacy = experiment.privacy
    if privacy.central:
        return _central_report(experiment)
    if not privacy.local:
        return None
    assert privacy.delta is not None
    sites = {}
    for name, hello in hellos.items():
        plan = hello.privacy
        if plan is None:
            continue
        sites[name] = SitePrivacyReport(
            mechanism=MECHANISM,
            accountant=plan.accountant,
            epsilon=0.0,
            delta=plan.delta,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            steps=0,
            sample_rate=plan.sample_rate,
            expected_batch_size=plan.expected_batch_size,
            poisson_sampling=plan.poisson_sampling,
            noise_calibrated=plan.calibrated,
            planned_epsilon=plan.planned_epsilon,
            planned_steps=plan.total_steps,
            run=hello.privacy_run,
        )
    return PrivacyReport(
        target_epsilon=privacy.target_epsilon,
        delta=privacy.delta,
        accountant=privacy.accountant,
        reproducible_noise=privacy.reproducible_noise,
        sites=sites,
        repairs=repairs,
        scope=SCOPE,
    )


def _central_report(experiment: Experiment) -> PrivacyReport:
    from medfl.privacy._central import CENTRAL_SCOPE

    privacy = experiment.privacy
    assert privacy.delta is not None
    return PrivacyReport(
        mode="central",
        target_epsilon=privacy.target_epsilon,
        delta=privacy.delta,
        accountant=privacy.accountant,
        reproducible_noise=privacy.reproducible_noise,
        scope=CENTRAL_SCOPE,
    )


def _spend(result: RunResult, record: RoundRecord, fed: Federation) -> None:
    """A round's ε into result.privacy; a site that stopped is said in the notes; what
    secure aggregation's range clipped."""
    if result.secure_aggregation is not None:
        result.secure_aggregation["clippedValues"] = dict(fed.clipped_values)
    if result.privacy is None:
        return
    if fed.central is not None:
        result.privacy.central = fed.central.report()
    for name, site in record.sites.items():
        report = result.privacy.sites.get(name)
        if report is None:
            continue
        if name in fed.spent:
            report.epsilon, report.steps = fed.spent[name].epsilon, fed.spent[name].steps
        if site.epsilon is not None:
            report.rounds_contributed += 1
        if site.status == "stopped" and report.stopped is None:
            report.stopped = site.reason
            result.notes.append(_stopped_note(site.reason, fed.experiment))


def _stopped_note(reason: str | None, experiment: Experiment) -> str:
    return f"{reason}; the run went on with the other sites (minSites {experiment.min_sites})"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | SystemExit):  # Ctrl-C; Flower stopping the run
        return "interrupted"
    return f"internal error: {type(exc).__name__}: {exc}"


def _kind(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "interrupted"
    return type(exc).__name__ if isinstance(exc, MedflError) else "internal"


def _save_model(
    store: RunStore, setup: Setup, params: Params, experiment: Experiment, notes: list[str]
) -> None:
    start = setup.start
    store.save_model(start.whole(params), list(start.parts.names), setup.preprocessor, experiment)
    if start.parts.local:
        notes.append(
            "the sites kept their own layers (personalization); model.pt holds those "
            f"layers as they were at round 0: {', '.join(sorted(start.parts.local))}"
        )


def _test_and_save(
    fed: Federation,
    setup: Setup,
    params: Params,
    result: RunResult,
    store: RunStore,
    options: DriveOptions,
) -> None:
    """After the rounds: the test splits (once), personalization, the model, baselines."""
    experiment = fed.experiment
    result.final = fed.evaluate(params, setup.active)
    if experiment.personalization.fine_tunes:
        result.personalized = fed.personalize(params, setup.active, result.notes)
    _save_model(store, setup, params, experiment, result.notes)
    if options.baselines:
        started = time.perf_counter()
        result.baselines = compute_baselines(experiment, setup, result.notes, options.policies)
        result.timings["baselineSeconds"] = time.perf_counter() - started
    elif experiment.evaluation.baselines and options.no_baselines_because:
        result.notes.append(f"baselines left out: {options.no_baselines_because}")


def drive(
    experiment: Experiment, transport: Transport, store: RunStore, options: DriveOptions
) -> RunResult:
    """Set up, run every round (checkpointing each), evaluate on test, save the model."""
    result = RunResult(name=experiment.name, engine=options.engine)
    began = time.perf_counter()
    fed = Federation(experiment, transport)
    before: RunResult | None = None  # resuming: result.json as the run left it
    try:
        before = store.load_result() if options.resume else None
        saved = store.load_checkpoint() if options.resume else None
        setup = fed.setup(resume=site_resumes(before, saved, experiment))
        start = _start(setup, before, saved)
        _record_setup(result, setup, experiment)
        if before is not None:
            _carry_privacy(result, before, experiment)
            fed.clipped_values = dict((before.secure_aggregation or {}).get("clippedValues", {}))
        result.timings["setupSeconds"] = time.perf_counter() - began
        result.rounds = list(start.rounds)
        before = None  # from here result.json is this run's

        def on_round(record: RoundRecord, params: Params, optimizer: ServerOptimizer) -> None:
            result.rounds.append(record)
            _spend(result, record, fed)
            store.save_result(result)  # first: a checkpoint never runs ahead of result.json
            if not options.validation_only:
                store.save_checkpoint(params, optimizer.state(), len(result.rounds))
            if options.progress:
                options.progress(record)

        trained = time.perf_counter()
        params = fed.run_rounds(setup, start, on_round)
        result.timings["trainingSeconds"] = time.perf_counter() - trained
        if options.validation_only:
            result.notes.append(TRIAL_NOTE)
        else:
            _test_and_save(fed, setup, params, result, store, options)
        result.status = "succeeded"
    except BaseException as exc:
        failed(before or result, exc)
        raise
    finally:
        result.timings["totalSeconds"] = time.perf_counter() - began
        # A resume refused before its first round keeps the run's rounds and ε spent.
        store.save_result(before or result)
    return result


def failed(result: RunResult, exc: BaseException) -> None:
    """``result`` as failed by ``exc``, with the reason."""
    result.status = "failed"
    result.error = str(exc) if isinstance(exc, MedflError) else _describe(exc)
    result.error_kind = _kind(exc)
