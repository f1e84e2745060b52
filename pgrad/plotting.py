"""Learning-curve figures from run folders (``pgrad plot``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pgrad.errors import ConfigError


def read_episodes(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, returns)`` of a run folder's episodes.csv."""
    path = run / "episodes.csv"
    if not path.is_file():
        raise ConfigError(f"{run} is not a pgrad run folder (no episodes.csv)")
    steps, returns = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            steps.append(float(row["step"]))
            returns.append(float(row["return"]))
    return np.asarray(steps), np.asarray(returns)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start, never shifted)."""
    if len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def seed_folders(run: Path) -> list[Path]:
    """The run itself, or its ``seed_<S>`` folders for a multi-seed run."""
    seeds = sorted(p for p in run.glob("seed_*") if p.is_dir())
    return seeds or [run]


def plot_runs(runs: list[Path], out: Path, smooth: int = 20) -> None:
    """One curve per run (mean over seeds with min-max band for multi-seed runs) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for run in runs:
        if not run.is_dir():
            raise ConfigError(f"run folder not found: {run}")
        curves = []
        for folder in seed_folders(run):
            steps, returns = read_episodes(folder)
            if len(steps):
                curves.append((steps, moving_average(returns, smooth)))
        if not curves:
            raise ConfigError(f"{run} has no finished episodes to plot")
        label = run.name
        if len(curves) == 1:
            axes.plot(*curves[0], label=label)
            continue
        grid = np.linspace(0, min(c[0][-1] for c in curves), 200)
        stacked = np.stack([np.interp(grid, s, r) for s, r in curves])
        line, = axes.plot(grid, stacked.mean(0), label=f"{label} ({len(curves)} seeds)")
        axes.fill_between(grid, stacked.min(0), stacked.max(0), color=line.get_color(), alpha=0.2)
    axes.set_xlabel("environment steps")
    axes.set_ylabel(f"episode return ({smooth}-episode moving average)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
