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


def read_logged_evaluations(run: Path, column: str = "eval_return_mean") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of the finite ``column`` entries in a run folder's metrics.csv.

    ARS logs the return of its unperturbed policy there (``eval_return_mean``, the latest
    evaluation, repeated until the next one): its training episodes are perturbed rollouts, which
    sit well below the policy that is kept. Empty arrays when the file or the column is absent.
    """
    path = run / "metrics.csv"
    steps: list[float] = []
    values: list[float] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text = row.get(column) or ""
                try:
                    value = float(text)
                except ValueError:
                    continue
                if np.isfinite(value):
                    steps.append(float(row["step"]))
                    values.append(value)
    return np.asarray(steps), np.asarray(values)


def logged_evaluation_curves(folders: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every seed folder's logged evaluations if all of them have some, else none: a band over
    only the seeds that have them would mislead."""
    curves = [read_logged_evaluations(folder) for folder in folders]
    return curves if curves and all(len(steps) for steps, _ in curves) else []


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


def smoothed_band(
    curves: list[tuple[np.ndarray, np.ndarray]], smooth: int, n_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' smoothed curves on a common step grid: ``(grid, mean, low, high)``.

    The band is a 95% percentile bootstrap interval of the mean over seeds, resampling seeds at
    each grid point; with one seed it collapses onto the curve. The grid stops at the shortest
    run, so every point averages the same seeds.
    """
    end = min(steps[-1] for steps, _ in curves)
    grid = np.linspace(min(steps[0] for steps, _ in curves), end, 200)
    stacked = np.stack([np.interp(grid, steps, moving_average(returns, smooth)) for steps, returns in curves])
    mean = stacked.mean(axis=0)
    if len(curves) == 1:
        return grid, mean, mean, mean
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(curves), size=(n_resamples, len(curves)))
    resampled_means = stacked[picks].mean(axis=1)  # (n_resamples, grid)
    low, high = np.quantile(resampled_means, [0.025, 0.975], axis=0)
    return grid, mean, low, high


def run_labels(runs: list[Path]) -> list[str]:
    """A legend label per run: its folder name, with as many parent folders as it takes to tell
    runs apart (``ppo/Hopper-v5`` and ``a2c/Hopper-v5``, not ``Hopper-v5`` twice)."""
    parts = [Path(run).resolve().parts[1:] for run in runs]  # without the root, which is no folder name
    depth = [1] * len(runs)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashing = [i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1


def plot_runs(runs: list[Path], out: Path, smooth: int = 20) -> None:
    """One line per run folder (mean over its seeds, with a 95% bootstrap band) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for run, label in zip(runs, run_labels(runs)):
        if not run.is_dir():
            raise ConfigError(f"run folder not found: {run}")
        curves = [read_episodes(folder) for folder in seed_folders(run)]
        curves = [c for c in curves if len(c[0])]
        if not curves:
            raise ConfigError(f"{run} has no finished episodes to plot")
        grid, mean, low, high = smoothed_band(curves, smooth)
        seeds = f" ({len(curves)} seeds, 95% CI)" if len(curves) > 1 else ""
        (line,) = axes.plot(grid, mean, label=f"{label}{seeds}")
        if len(curves) > 1:
            axes.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
        evaluations = logged_evaluation_curves(seed_folders(run))
        if evaluations:  # each point already averages several evaluation episodes: not smoothed
            grid, mean, low, high = smoothed_band(evaluations, 1)
            axes.plot(
                grid, mean, linestyle="--", color=line.get_color(), label=f"{label}, unperturbed policy's evaluations"
            )
            if len(evaluations) > 1:
                axes.fill_between(grid, low, high, color=line.get_color(), alpha=0.1)
    axes.set_xlabel("environment steps")
    axes.set_ylabel(f"episode return ({smooth}-episode moving average)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
