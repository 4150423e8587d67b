"""A PNG of a run: each metric per round, for the federation and every site."""

from __future__ import annotations

from pathlib import Path

from medfl.results._model import RunResult

PLOTTED = ("accuracy", "auc", "loss")
PLOT_FILE = "curves.png"


def _series(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def plot_rounds(result: RunResult, folder: Path) -> list[Path]:
    """One PNG with a panel per metric; returns the files written (none before round 1)."""
    if not result.rounds:
        return []
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure registry to leak

    rounds = [r.round for r in result.rounds]
    sites = sorted({s for r in result.rounds for s in r.sites})
    fig = Figure(figsize=(14, 3.8), dpi=90, layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(PLOTTED)), PLOTTED, strict=True):
        for site in sites:
            ys = [
                r.sites[site].metrics.get(metric) if site in r.sites else None
                for r in result.rounds
            ]
            ax.plot(rounds, _series(ys), marker=".", linewidth=1, alpha=0.7, label=site)
        fed = _series([r.metrics.get(metric) for r in result.rounds])
        ax.plot(rounds, fed, color="black", linewidth=2.5, label="federation")
        ax.set(xlabel="round", title=f"validation {metric}")
        ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize=8)
    fig.suptitle(f"{result.name}: validation metrics per round, per site")
    path = folder / PLOT_FILE
    fig.savefig(path)
    return [path]
