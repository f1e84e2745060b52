"""``pgrad report``: a Markdown + HTML summary of a set of runs, with PNG figures beside it.

Runs are grouped by (env, algorithm). Each seed contributes one final score: its deterministic
evaluation mean if it was evaluated, else its last-100-training-episode mean (the table says
which). Per group the report gives the IQM with a 95% bootstrap interval over seeds (Agarwal et
al. 2021), the seed count, a performance profile per env and learning curves (dashed: the
unperturbed policy's evaluations, for algorithms that log them, i.e. ARS).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pgrad.errors import ConfigError
from pgrad.experiments.stats import iqm, stratified_bootstrap_ci
from pgrad.io import atomic_write_text
from pgrad.plotting import logged_evaluation_curves, read_episodes, seed_folders, smoothed_band


@dataclass
class Group:
    """All seeds of one (env, algorithm) pair."""

    env: str
    algo: str
    folders: list[Path] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    score_kinds: set[str] = field(default_factory=set)
    configs: list[dict[str, Any]] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def collect_groups(runs: list[Path]) -> list[Group]:
    """Read every seed folder under ``runs`` and group them by (env, algo)."""
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        if not run.is_dir():
            raise ConfigError(f"run folder not found: {run}")
        for folder in seed_folders(run):
            if not (folder / "config.json").is_file():
                raise ConfigError(f"{folder} is not a pgrad run folder (no config.json)")
            config = _read_json(folder / "config.json")
            summary = _read_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
            key = (config.get("env", "?"), config.get("algo", "?"))
            group = groups.setdefault(key, Group(env=key[0], algo=key[1]))
            if summary.get("eval_mean_return") is not None:
                group.scores.append(float(summary["eval_mean_return"]))
                group.score_kinds.add("evaluation")
            elif summary.get("last_100_episode_return_mean") is not None:
                group.scores.append(float(summary["last_100_episode_return_mean"]))
                group.score_kinds.add("last 100 training episodes")
            group.folders.append(folder)
            group.configs.append(config)
    return sorted(groups.values(), key=lambda g: (g.env, g.algo))


def _figures(groups: list[Group], out_dir: Path, stem: str, smooth: int) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    envs = sorted({g.env for g in groups})
    for env in envs:
        env_groups = [g for g in groups if g.env == env]
        safe_env = "".join(c if c.isalnum() or c in "-_." else "_" for c in env)
        # learning curves: mean over seeds with a 95% bootstrap band
        figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
        for group in env_groups:
            curves = [read_episodes(f) for f in group.folders]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
            grid, mean, low, high = smoothed_band(curves, smooth)
            (line,) = axes.plot(grid, mean, label=f"{group.algo} ({len(curves)} seeds)")
            axes.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
            evaluations = logged_evaluation_curves(group.folders)
            if evaluations:
                # each point already averages several evaluation episodes: no further smoothing
                grid, mean, low, high = smoothed_band(evaluations, 1)
                axes.plot(
                    grid,
                    mean,
                    linestyle="--",
                    color=line.get_color(),
                    label=f"{group.algo}, unperturbed policy's evaluations ({len(evaluations)} seeds)",
                )
                axes.fill_between(grid, low, high, color=line.get_color(), alpha=0.1)
        axes.set(
            title=f"{env}: learning curves (mean, 95% bootstrap CI)",
            xlabel="environment steps",
            ylabel="episode return",
        )
        axes.grid(alpha=0.3)
        axes.legend(loc="best")
        figure.tight_layout()
        curve_path = out_dir / f"{stem}_{safe_env}_curves.png"
        figure.savefig(curve_path)
        plt.close(figure)
        figures.append((f"{env}: learning curves", curve_path))

        # performance profile: fraction of seeds whose final score exceeds tau
        scored = [g for g in env_groups if g.scores]
        if scored:
            all_scores = np.concatenate([g.scores for g in scored])
            low, high = all_scores.min(), all_scores.max()
            if high == low:  # every seed scored the same: widen the axis so the drop from 1 to 0 shows
                low, high = low - max(1.0, 0.05 * abs(low)), high + max(1.0, 0.05 * abs(high))
            taus = np.linspace(low, high, 200)
            figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
            for group in scored:
                scores = np.asarray(group.scores)
                axes.step(
                    taus,
                    [(scores > tau).mean() for tau in taus],
                    where="post",
                    label=f"{group.algo} ({len(scores)} seeds)",
                )
            axes.set(
                title=f"{env}: performance profile",
                xlabel="final score threshold tau",
                ylabel="fraction of seeds with score > tau",
                ylim=(-0.02, 1.02),
            )
            axes.grid(alpha=0.3)
            axes.legend(loc="best")
            figure.tight_layout()
            profile_path = out_dir / f"{stem}_{safe_env}_profile.png"
            figure.savefig(profile_path)
            plt.close(figure)
            figures.append((f"{env}: performance profile", profile_path))
    return figures


def _differing_hyperparameters(groups: list[Group]) -> tuple[list[str], dict[tuple[str, str], dict[str, Any]]]:
    """Hyperparameters that differ between groups (or between seeds of a group: shown as 'varies')."""
    per_group: dict[tuple[str, str], dict[str, Any]] = {}
    for group in groups:
        merged: dict[str, Any] = {}
        for config in group.configs:
            for key, value in config.get("config", {}).items():
                merged[key] = value if merged.get(key, value) == value else "varies"
        per_group[(group.env, group.algo)] = merged
    keys = sorted({k for values in per_group.values() for k in values})
    differing = [
        k
        for k in keys
        if len({json.dumps(v.get(k)) for v in per_group.values()}) > 1
        or any(v.get(k) == "varies" for v in per_group.values())
    ]
    return differing, per_group


def write_report(runs: list[Path], out: Path, smooth: int = 20, n_resamples: int = 2000) -> list[Path]:
    """Write ``out`` (.md), ``out`` with .html, and PNG figures beside them; return the paths."""
    groups = collect_groups(runs)
    if not groups:
        raise ConfigError("no runs to report on")
    out = out.with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = _figures(groups, out.parent, out.stem, smooth)

    rows = []
    for group in groups:
        n = len(group.scores)
        if n:
            point, low, high = stratified_bootstrap_ci([group.scores], iqm, n_resamples=n_resamples)
            ci = f"{point:.1f} [{low:.1f}, {high:.1f}]"
            mean = f"{np.mean(group.scores):.1f} ± {np.std(group.scores):.1f}"
        else:
            ci = mean = "no finished episodes"
        kind = " / ".join(sorted(group.score_kinds)) or "-"
        warning = " (too few seeds for a meaningful interval)" if 0 < n < 5 else ""
        rows.append((group.env, group.algo, str(n), ci + warning, mean, kind))

    differing, per_group = _differing_hyperparameters(groups)
    lines = [
        "# pgrad report",
        "",
        f"{len(groups)} env/algorithm groups from {sum(len(g.folders) for g in groups)} runs. Scores are per-seed "
        "final "
        "returns; IQM = interquartile mean with a 95% percentile bootstrap interval over seeds "
        f"({n_resamples} resamples; Agarwal et al. 2021). Fewer than 5 seeds: read intervals with care.",
        "",
        "| env | algorithm | seeds | IQM [95% CI] | mean ± std | score |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
    ]
    if differing:
        lines += [
            "## Hyperparameters that differ",
            "",
            "| env | algorithm | " + " | ".join(differing) + " |",
            "|---|---|" + "---|" * len(differing),
        ]
        for (env, algo), values in per_group.items():
            lines.append(f"| {env} | {algo} | " + " | ".join(str(values.get(k, "-")) for k in differing) + " |")
        lines.append("")
    lines += ["## Figures", ""]
    for title, path in figures:
        lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    lines += ["## Runs", ""] + [f"- `{f}`" for g in groups for f in g.folders] + [""]
    atomic_write_text(out, "\n".join(lines))

    html_rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    html_figures = "".join(
        f"<h3>{html.escape(t)}</h3><img src='{html.escape(p.name)}' alt='{html.escape(t)}'>" for t, p in figures
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>pgrad report</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style></head><body>"
        f"<h1>pgrad report</h1><p>{html.escape(lines[2])}</p>"
        "<table><tr><th>env</th><th>algorithm</th><th>seeds</th><th>IQM [95% CI]</th><th>mean ± "
        "std</th><th>score</th></tr>"
        f"{html_rows}</table><h2>Figures</h2>{html_figures}</body></html>"
    )
    html_path = out.with_suffix(".html")
    atomic_write_text(html_path, page)
    return [out, html_path, *[p for _, p in figures]]
