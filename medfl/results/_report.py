"""A readable Markdown report of a run, for the researcher who reads no JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medfl.results._model import (
    Evaluation,
    ModelInfo,
    PrivacyReport,
    RunResult,
    SimulationReport,
)
from medfl.spec import Experiment

SHOWN = ("accuracy", "auc", "sensitivity", "specificity", "f1", "loss")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


WITHHELD = "withheld by the site (its disclosure policy)"


def count_text(value: int | None) -> str:
    return "suppressed" if value is None else str(value)


def _table(
    rows: dict[str, dict[str, float | None]], first: str, withheld: list[str] | None = None
) -> list[str]:
    lines = [f"| {first} | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(m)) for m in SHOWN) + " |")
    lines += [f"| {name} | {WITHHELD} |" + " |" * (len(SHOWN) - 1) for name in withheld or []]
    return lines


def _evaluation_rows(label: str, ev: Evaluation) -> dict[str, dict[str, float | None]]:
    total = len(ev.sites) + len(ev.withheld)
    which = "all sites" if not ev.withheld else f"{len(ev.sites)} of {total} sites"
    return {f"{label} ({which})": ev.metrics, f"{label} (mean over sites)": ev.mean_over_sites}


def _disclosure(result: RunResult) -> list[str]:
    """Each site's limits, and what it kept to itself under them."""
    guarded = {n: r["disclosure"] for n, r in result.sites.items() if r.get("disclosure")}
    if not guarded:
        return []
    lines = [
        "",
        "## Disclosure control",
        "",
        "Each site applies its own policy (default limits without a policy file) to "
        "everything it lets out: its data report, the encoding's aggregates, its metrics.",
        "",
    ]
    for name, said in guarded.items():
        limits = said["limits"]
        kept = [f"its {split} metrics" for split in said["withheld"]] + said["suppressed"]
        lines.append(
            f"- `{name}`: cell minimum {limits.get('minCellCount')}, row minimum "
            f"{limits.get('minRows')}, at least {limits.get('minSites')} sites; "
            f"withheld: {'; '.join(kept) or 'nothing'}"
        )
    return lines


def _central(privacy: PrivacyReport) -> list[str]:
    """The server's mechanism, its ε so far and the plan, and what ε covers."""
    c = privacy.central or {}
    chosen = " (chosen for the target)" if c.get("noiseCalibrated") else ""
    lines = [
        "",
        "## Privacy",
        "",
        f"Central differential privacy: {c.get('mechanism', '')}. Each round "
        + (
            "each site clipped its own update (secure aggregation)"
            if privacy.secure_aggregation
            else "the server clipped every site's update"
        )
        + f" to L2 norm {c.get('clippingNorm', 0):g}, the server averaged over "
        f"{c.get('sites')} sites and added Gaussian noise, noise multiplier "
        f"{c.get('noiseMultiplier', 0):.4g}{chosen}; accountant `{privacy.accountant}`, "
        f"δ = {privacy.delta:g}.",
        "",
        f"ε after {c.get('rounds')} round(s): **{c.get('epsilon', 0):.3f}** (planned for all "
        f"rounds: {c.get('plannedEpsilon', 0):.3f}); updates clipped per round: "
        f"{', '.join(map(str, c.get('clippedByRound', []))) or '-'}.",
    ]
    return lines + _adaptive(c) + _scope(privacy.scope)


def _secure(secure: dict[str, Any]) -> list[str]:
    """SecAgg+'s settings, what it protects and what not, and what its range clipped."""
    clipped = secure.get("clippedValues", {})
    lines = [
        "",
        "## Secure aggregation",
        "",
        f"{secure['protocol']} over {secure['sites']} sites: each site's secrets split "
        f"into {secure['shares']} shares (one it keeps, one for each neighbour), "
        f"{secure['threshold']} of them rebuild a dropped site's masks; values quantised to "
        f"{secure['quantizationStep']:.3g} within ±{secure['clippingRange']:g} "
        f"({secure['quantizationBits']} bits).",
        "",
        "**Protects:**",
        "",
    ]
    lines += [f"- {text}" for text in secure["protects"]]
    lines += ["", "**Does not protect:**", ""] + [f"- {t}" for t in secure["doesNotProtect"]]
    outside = {n: c for n, c in clipped.items() if c}
    said = ", ".join(f"{n}: {c}" for n, c in outside.items()) or "none"
    return [*lines, "", f"Values clipped to the range, over all rounds: {said}."]


def _adaptive(c: dict[str, Any]) -> list[str]:
    adaptive = c.get("adaptive")
    if not adaptive:
        return []
    norms = ", ".join(f"{n:.3g}" for n in c.get("clippingNormByRound", [])) or "-"
    return [
        "",
        f"Adaptive clipping: the norm started at {c.get('clippingNorm', 0):g} and moved "
        f"toward the {adaptive['targetQuantile']:g} quantile of the sites' update norms "
        f"(step {adaptive['learningRate']:g}, from a count noised with multiplier "
        f"{adaptive['countNoiseMultiplier']:.4g}; the update's own noise multiplier "
        f"{adaptive['updateNoiseMultiplier']:.4g}, so both cost what "
        f"{c.get('noiseMultiplier', 0):.4g} alone would). Norm per round: {norms}.",
    ]


def _scope(scope: dict[str, Any]) -> list[str]:
    lines = ["", f"**What ε covers** ({scope.get('unit', '')}):", ""]
    lines += [f"- {text}" for text in scope.get("covers", [])]
    lines += ["", "**What it does not cover:**", ""]
    lines += [f"- {text}" for text in scope.get("doesNotCover", [])]
    lines += ["", "**Assumptions:**", ""]
    return lines + [f"- {text}" for text in scope.get("assumptions", [])]


def _privacy(privacy: PrivacyReport, result: RunResult) -> list[str]:
    """Per site ε, δ, noise and clipping, the plan, ε per round, and what ε covers."""
    if privacy.mode == "central":
        return _central(privacy)
    target = (
        f"target ε = {privacy.target_epsilon:g} for the whole experiment, "
        if privacy.target_epsilon is not None
        else "noise multiplier given, "
    )
    noise = (
        "derived from training.seed (reproducible)"
        if privacy.reproducible_noise
        else "from the operating system's randomness"
    )
    lines = [
        "",
        "## Privacy",
        "",
        f"Local differential privacy: DP-SGD (Opacus) at each site, {target}δ = "
        f"{privacy.delta:g}, accountant `{privacy.accountant}`; one accountant per site "
        f"for all rounds; noise {noise}. No central DP; "
        + (
            "updates under secure aggregation."
            if privacy.secure_aggregation
            else "no secure aggregation."
        ),
        "",
        "| site | ε spent | δ | noise multiplier | clipping | sample rate | steps | "
        "planned ε | planned steps | rounds |",
        "|---" * 10 + "|",
    ]
    for name, site in privacy.sites.items():
        chosen = " (for the target)" if site.noise_calibrated else ""
        lines.append(
            f"| {name} | {site.epsilon:.3f} | {site.delta:g} | {site.noise_multiplier:.4g}"
            f"{chosen} | {site.max_grad_norm:g} | {site.sample_rate:.4f} | {site.steps} | "
            f"{site.planned_epsilon:.3f} | {site.planned_steps} | {site.rounds_contributed} |"
        )
    lines += [f"- {site.stopped}" for site in privacy.sites.values() if site.stopped]
    lines += _epsilon_per_round(result)
    lines += [f"- model repaired for DP-SGD: {change}" for change in privacy.repairs]
    lines += _scope(privacy.scope)
    return lines


def _epsilon_per_round(result: RunResult) -> list[str]:
    names = list(result.privacy.sites) if result.privacy else []
    if not names or not result.rounds:
        return []
    lines = ["", "ε per round (each site's whole-experiment figure after that round):", ""]
    lines += ["| round | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for record in result.rounds:
        cells = []
        for name in names:
            site = record.sites.get(name)
            eps = site.epsilon if site else None
            cells.append(f"{eps:.3f}" if eps is not None else (site.status if site else "-"))
        lines.append(f"| {record.round} | " + " | ".join(cells) + " |")
    return lines


def _transfer_headline(result: RunResult) -> list[str]:
    scratch, final = result.baselines.get("scratch"), result.final
    if scratch is None or final is None:
        return []
    got = [(m, final.metrics.get(m), scratch.metrics.get(m)) for m in ("auc", "accuracy")]
    said = ", ".join(f"{m} {_fmt(a)} vs {_fmt(b)}" for m, a, b in got)
    return [
        "",
        f"**Transfer:** from the pretrained weights {said} from scratch (the same sites, "
        "strategy, rounds and input encoding; random starting weights, nothing frozen).",
    ]


def _personalized(final: Evaluation, personal: Evaluation) -> list[str]:
    lines = [
        "",
        "## Personalised models",
        "",
        "Each site fine-tuned the federated model on its own training split; both are "
        "scored on that site's test split. The fine-tuned weights stayed at the site.",
        "",
        "| site | test rows | accuracy: federated | personalised | AUC: federated "
        "| personalised | loss: federated | personalised |",
        "|---" * 8 + "|",
    ]
    for name, site in final.sites.items():
        mine = personal.sites.get(name)
        cells = [site.metrics, mine.metrics if mine else {}]
        values = [_fmt(m.get(k)) for k in ("accuracy", "auc", "loss") for m in cells]
        lines.append(f"| {name} | {site.num_examples} | " + " | ".join(values) + " |")
    return lines


def _model(info: ModelInfo) -> list[str]:
    if info.pretrained is None and all(la.role == "sent" for la in info.layers):
        return ["", f"Model: {info.values_total} values, all trained and sent each round."]
    share = info.values_sent / info.values_total if info.values_total else 0.0
    lines = [
        "",
        "## Model",
        "",
        f"{info.values_sent} of {info.values_total} values ({share:.0%}) travel each way "
        "each round; frozen layers are neither trained nor sent, local ones stay at each site.",
        "",
        "| tensor | shape | role |",
        "|---|---|---|",
    ]
    lines += [f"| {la.name} | {la.shape} | {la.role} |" for la in info.layers]
    source = info.pretrained
    if source:
        lines += [
            "",
            f"Started from `{source.path}` ({source.kind}, sha256 `{source.sha256[:12]}…`, "
            f"input encoding: {source.preprocessing}); loaded: {', '.join(source.loaded) or '-'}; "
            f"freshly initialised: {', '.join(source.reinitialized) or '-'}.",
        ]
    return lines


def _simulation(sim: SimulationReport) -> list[str]:
    """The batched engine's sites, partition and memory (each site's figures in CSV)."""
    what = "virtual sites" if sim.virtual else "the experiment's own sites"
    lines = [
        "",
        "## Simulation",
        "",
        f"{sim.sites} {what}, {sim.sites_per_round} sampled per round, trained as stacks "
        f"on `{sim.device}`.",
    ]
    part = sim.partition
    if part is not None:
        settings = ", ".join(f"{k} {v}" for k, v in part.settings.items()) or "no settings"
        lines += [
            "",
            f"Partition `{part.type}` ({settings}; seed {part.seed}) of {part.pool_rows} pooled "
            f"training rows: {part.rows} rows over the sites, {part.size['min']:g} / "
            f"{part.size['median']:g} / {part.size['max']:g} rows per site (min / median / "
            f"max), positive share {part.positive_share['min']:.2f} / "
            f"{part.positive_share['median']:.2f} / {part.positive_share['max']:.2f}, "
            f"{part.single_class_sites} site(s) with one class only.",
        ]
        lines += [f"- {note}" for note in part.notes]
    seconds = [r.seconds for r in sim.rounds]
    if seconds:
        lines += ["", f"Seconds per round: median {sorted(seconds)[len(seconds) // 2]:.3f}."]
    memory = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sim.memory.items())
    lines += ["", f"Memory: {memory}."]
    lines += [f"- {k}: `{v}`" for k, v in sim.files.items()]
    return lines


def render_report(result: RunResult, experiment: Experiment, plots: list[Path]) -> str:
    lines = [f"# {result.name}: {result.status}", ""]
    if result.error:
        lines += ["**The run failed:**", "", "```", result.error, "```", ""]
    strategy = experiment.strategy.name
    lines += [
        f"Engine `{result.engine}`, strategy `{strategy}`, model `{experiment.model.type}`, "
        f"{len(result.rounds)} of {experiment.training.rounds} rounds, "
        f"{len(result.sites)} site(s), {len(result.features)} input features.",
        "",
        "## Sites",
        "",
        "| site | rows | positive | negative | without outcome | dropped (missing) "
        "| columns dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rep in result.sites.items():
        lines.append(
            f"| {name} | {rep['rows']} | {count_text(rep['positives'])} | "
            f"{count_text(rep['negatives'])} | {count_text(rep['rowsWithoutOutcome'])} | "
            f"{count_text(rep['rowsDroppedMissing'])} | "
            f"{', '.join(rep['droppedColumns']) or '-'} |"
        )
    for name, why in result.excluded_sites.items():
        lines.append(f"| {name} | excluded: {why} | | | | | |")
    if result.final:
        lines += ["", "## Final model on the test splits", ""]
        rows: dict[str, dict[str, float | None]] = {}
        for label, ev in result.comparisons():
            rows |= _evaluation_rows(label, ev)
        lines += _table(rows, "model")
        lines += _transfer_headline(result)
        lines += ["", "Per site (federated model):", ""]
        per_site = {n: s.metrics for n, s in result.final.sites.items()}
        lines += _table(per_site, "site", list(result.final.withheld))
    if result.final and result.personalized:
        lines += _personalized(result.final, result.personalized)
    if result.model:
        lines += _model(result.model)
    if result.rounds:
        last = result.rounds[-1]
        lines += ["", f"## Validation, round {last.round}", ""]
        kept = [n for n, s in last.sites.items() if s.withheld]
        shown = {n: s.metrics for n, s in last.sites.items() if not s.withheld}
        lines += _table({"federation": last.metrics, **shown}, "site", kept)
        flagged = [
            (r.round, n, s) for r in result.rounds for n, s in r.sites.items() if s.status != "ok"
        ]
        if flagged:
            lines += ["", "## Sites flagged during training", ""]
            lines += [f"- round {r}: `{n}` {s.status}: {s.reason}" for r, n, s in flagged]
    if result.privacy:
        lines += _privacy(result.privacy, result)
    if result.secure_aggregation:
        lines += _secure(result.secure_aggregation)
    if result.simulation:
        lines += _simulation(result.simulation)
    lines += _disclosure(result)
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    if plots:
        lines += ["", "## Curves", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += [
        "",
        "*Baselines* (computed in this process, simulation only): *local*, each site "
        "trains alone; *pooled*, all training rows together; *from scratch*, this "
        "federation from random weights; *pretrained, untrained*, the starting weights "
        "as they are. All but *from scratch* start from the same weights.",
        "",
        "*All sites*: accuracy, sensitivity, specificity and F1 from the confusion counts "
        "summed over the sites (as if the test splits were pooled); AUC and loss are the "
        "example-weighted mean of the sites'. *Mean over sites*: each site counts once.",
        "",
        "Undefined metrics (for example AUC at a site with one outcome class) show "
        "as n/a and are left out of the federation's figures.",
        "",
    ]
    return "\n".join(lines)
