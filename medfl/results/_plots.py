"""PNG plots of a run: each metric per round, the federation and every site."""

from __future__ import annotations

from pathlib import Path

from medfl.results._model import RunResult

PLOTTED = ("accuracy", "auc", "loss")


def plot_rounds(result: RunResult, folder: Path) -> list[Path]:
    """One PNG per metric; returns the files written (none before round 1)."""
    if not result.rounds:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rounds = [r.round for r in result.rounds]
    sites = sorted({s for r in result.rounds for s in r.sites})
    for metric in PLOTTED:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for site in sites:
            ys = [
                r.sites[site].metrics.get(metric) if site in r.sites else None
                for r in result.rounds
            ]
            ax.plot(
                rounds,
                [float("nan") if y is None else y for y in ys],
                marker=".",
                linewidth=1,
                alpha=0.7,
                label=site,
            )
        fed = [r.metrics.get(metric) for r in result.rounds]
        ax.plot(
            rounds,
            [float("nan") if y is None else y for y in fed],
            color="black",
            linewidth=2.5,
            label="federation",
        )
        ax.set(
            xlabel="round",
            ylabel=f"validation {metric}",
            title=f"{result.name}: validation {metric} per round",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"{metric}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
