"""The learning-quality suite: algorithms x envs x seeds at each preset's budget, then one table.

Run from a fresh clone (after `make install`):

    .venv/bin/python benchmarks/suite.py                      # everything below: days on 2 cores
    .venv/bin/python benchmarks/suite.py --algos ppo --envs InvertedPendulum-v5 --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/suite.py --list               # what would run, and what is done

Each (algorithm, env) pair trains with its shipped preset (what `pgrad train ALGO ENV` uses) for
the preset's budget (or --steps), every seed in its own process, --workers at a time, into
OUT/ALGO/ENV/seed_S/ exactly as `pgrad train ALGO ENV --seeds ...` would. It is resumable: a seed
whose summary.json exists is done and is not trained again, and a seed stopped mid-run continues
from its last checkpoint (as `pgrad train ... --resume`), so an interrupted suite continues where
it stopped when run again with the same arguments.

A seed folder trained with other settings than the ones the suite would use now (a preset changed
since, or another --steps) is stale: it is neither counted in the table nor continued, and the
suite trains nothing for that pair but names the seeds and the differences, so that an old
preset's result never passes for the current one. Move those folders away to retrain them.

Seeds have roles, so that a result cannot flatter the preset it measures. Presets are chosen on
the development seeds 0-4 (`--seeds dev`); results are reported on the evaluation seeds
1000-1009 (`--seeds eval`, the default), which are never used to choose anything. A row is "met"
only when its IQM on at least 10 evaluation seeds reaches the goal; a row run on development or
other seeds shows its numbers and "not judged". The protocol is printed with every table.

The table (OUT/suite.md, printed too) gives, per pair, the IQM and 95% stratified bootstrap
interval over seeds (Agarwal et al. 2021) of the mean return of each seed's last 100 training
episodes and of the deterministic evaluation (10 episodes per seed), the goal (BENCHMARKS.md,
"Reference numbers and goals") with "met", "NOT met" or "not judged", the mean wall time per seed
and the core-hours the pair's training took (from OUT/ALGO/ENV/cost.json, which every training
call of the suite adds to: its wall time times the processes it ran). A second table lists every
seed's last-100 and evaluation return. Seeds are never dropped: a pair with fewer finished seeds
than asked says so. `pgrad report` then writes the figures (learning curves, performance
profiles) for all pairs into OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENVS = [
    "CartPole-v1",
    "Pendulum-v1",
    "LunarLander-v3",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Ant-v5",
]
ALGOS = ["ppo", "a2c", "reinforce-baseline", "ars"]

# (algo, env) -> goal on the last-100-episode return (BENCHMARKS.md, "Reference numbers and goals").
GOALS = {
    ("ppo", "HalfCheetah-v5"): 5000,
    ("ppo", "Hopper-v5"): 2500,
    ("ppo", "Walker2d-v5"): 3500,
    ("ppo", "InvertedPendulum-v5"): 1000,
    ("ppo", "InvertedDoublePendulum-v5"): 9000,
    ("ppo", "LunarLander-v3"): 250,
    ("a2c", "HalfCheetah-v5"): 3000,
    ("a2c", "Hopper-v5"): 1500,
    ("reinforce-baseline", "InvertedPendulum-v5"): 950,
    ("ars", "HalfCheetah-v5"): 4500,
    ("ars", "Hopper-v5"): 3300,
}


# The seed protocol (module docstring): presets are chosen on DEVELOPMENT_SEEDS; results are
# reported on EVALUATION_SEEDS, which nothing was ever tuned on. A goal is judged only on at least
# MIN_EVALUATION_SEEDS of them.
DEVELOPMENT_SEEDS = [0, 1, 2, 3, 4]
EVALUATION_SEEDS = list(range(1000, 1010))
MIN_EVALUATION_SEEDS = 10
SEED_SETS = {"dev": DEVELOPMENT_SEEDS, "eval": EVALUATION_SEEDS}

PROTOCOL = (
    f"Protocol: presets are chosen on the development seeds {DEVELOPMENT_SEEDS[0]}-{DEVELOPMENT_SEEDS[-1]}; "
    f"results are reported on the evaluation seeds {EVALUATION_SEEDS[0]}-{EVALUATION_SEEDS[-1]}, never used to "
    f"choose anything. A goal is met only when the IQM of the last-100 training return over at least "
    f"{MIN_EVALUATION_SEEDS} evaluation seeds reaches it; rows on other seeds are not judged. "
    "IQM with its 95% stratified bootstrap interval over seeds (Agarwal et al. 2021); "
    "eval = 10 deterministic episodes per seed (reset seeds 10000-10009)."
)


def parse_seeds(words: list[str]) -> list[int]:
    """``--seeds``: ``eval``, ``dev`` or integers (several of each are joined in order, without repeats)."""
    seeds: list[int] = []
    for word in words:
        if word in SEED_SETS:
            chosen = SEED_SETS[word]
        else:
            try:
                chosen = [int(word)]
            except ValueError:
                raise SystemExit(f"--seeds: {word!r} is not a seed; accepted: integers, 'eval' or 'dev'") from None
        seeds += [seed for seed in chosen if seed not in seeds]
    return seeds


def seed_role(seeds: list[int]) -> str:
    """'evaluation', 'development' or 'other': which of the protocol's sets ``seeds`` all belong to."""
    if set(seeds) <= set(EVALUATION_SEEDS):
        return "evaluation"
    if set(seeds) <= set(DEVELOPMENT_SEEDS):
        return "development"
    return "other"


def planned_pairs(algos: list[str], envs: list[str]) -> list[tuple[str, str]]:
    """The (algo, env) pairs that have a shipped preset; others are skipped with a note."""
    from pgrad.algos import ALGORITHMS
    from pgrad.config import preset_names

    pairs = []
    for algo in algos:
        if algo not in ALGORITHMS:
            print(f"skipping {algo}: not an algorithm of this pgrad ({', '.join(ALGORITHMS)})", file=sys.stderr)
            continue
        shipped = set(preset_names(algo))
        for env in envs:
            if env in shipped:
                pairs.append((algo, env))
            else:
                print(f"skipping {algo} on {env}: no shipped preset", file=sys.stderr)
    return pairs


def seed_summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def current_settings(algo: str, env: str, steps: int | None) -> dict:
    """What a seed trained by the suite now records: preset name, resolved config, step budget."""
    from pgrad.algos import ALGORITHM_ARGUMENTS, ALGORITHMS
    from pgrad.config import resolve_preset
    from pgrad.experiments.runner import budget

    preset, values = resolve_preset(algo, env, None)
    config = ALGORITHMS[algo].Config.build({**values, **ALGORITHM_ARGUMENTS.get(algo, {})}).to_dict()
    return {"preset": preset, "config": config, "steps": budget(algo, preset, steps)}


def settings_differences(folder: Path, settings: dict) -> list[str]:
    """How the seed in ``folder`` was trained differently from ``settings`` (empty: the same, or not started)."""
    from pgrad.experiments.resume import config_changes

    if not (folder / "config.json").is_file():
        return []
    recorded = json.loads((folder / "config.json").read_text())
    differences = (
        [f"preset: {recorded.get('preset')!r} -> {settings['preset']!r}"]
        if recorded.get("preset") != settings["preset"]
        else []
    )
    differences += config_changes(recorded.get("config", {}), settings["config"])
    state = folder / "checkpoint" / "state.json"
    trained_for = (
        (json.loads(state.read_text()).get("learn_budget") or {}).get("total_steps") if state.is_file() else None
    )
    if trained_for is not None and trained_for != settings["steps"]:
        differences.append(f"steps: {trained_for} -> {settings['steps']}")
    return differences


def stale_seeds(algo: str, env: str, seeds: list[int], steps: int | None, out: Path) -> dict[int, list[str]]:
    """Seeds of the pair in ``out`` trained with other settings than the suite's now: seed -> differences."""
    return seeds_trained_otherwise(current_settings(algo, env, steps), seeds, out)


def seeds_trained_otherwise(settings: dict, seeds: list[int], out: Path) -> dict[int, list[str]]:
    """Seeds in ``out`` trained with other ``settings`` (:func:`current_settings`' form): seed -> differences."""
    found = {seed: settings_differences(out / f"seed_{seed}", settings) for seed in seeds}
    return {seed: differences for seed, differences in found.items() if differences}


def stale_message(algo: str, env: str, out: Path, stale: dict[int, list[str]]) -> str:
    first = next(iter(stale))
    return (
        f"{algo} on {env}: seeds {sorted(stale)} in {out} were trained with other settings than the suite's now "
        f"(seed {first}: {'; '.join(stale[first])}); move them away to retrain them"
    )


def train_pair(
    algo: str,
    env: str,
    seeds: list[int],
    steps: int | None,
    out: Path,
    workers: int,
    batched: bool = False,
    stale: dict[int, list[str]] | None = None,
) -> list[str]:
    """Train the seeds of one pair that have not finished yet; return error lines.

    ``stale``: the pair's :func:`stale_seeds` if already found; with any, nothing is trained.

    ``batched`` (PPO, several seeds missing): train them as seed-batched models, as
    ``pgrad train ppo ENV --seeds ... --batched`` does; each seed learns as it would alone."""
    stale = stale_seeds(algo, env, seeds, steps, out) if stale is None else stale
    if stale:  # neither continued nor counted (module docstring)
        return [stale_message(algo, env, out, stale)]
    return while_locked(
        out, f"{algo} on {env}", lambda: _train_locked_pair(algo, env, seeds, steps, out, workers, batched)
    )


def while_locked(out: Path, label: str, train: Callable[[], list[str]]) -> list[str]:
    """``train()``'s error lines, run while ``out`` is locked as `pgrad train --out` locks its run
    folder: a second suite (or a `pgrad train` on the same folder) is refused, with one error line
    starting with ``label``, instead of training the same seeds over this one."""
    from pgrad.errors import ConfigError
    from pgrad.experiments.run_folder import RunFolderLock

    lock = RunFolderLock(out)
    try:
        lock.acquire()
    except ConfigError as exc:
        return [f"{label}: {exc}"]
    try:
        return train()
    finally:
        lock.release()


def _train_locked_pair(
    algo: str, env: str, seeds: list[int], steps: int | None, out: Path, workers: int, batched: bool
) -> list[str]:
    """:func:`train_pair` once the pair's folder is locked and has no stale seeds."""
    from pgrad.experiments.runner import TrainSpec, aggregate, run_seeds
    from pgrad.experiments.seed_batched import BATCHED_ALGORITHMS, run_seeds_batched
    from pgrad.io import write_json

    missing = [s for s in seeds if seed_summary(out / f"seed_{s}") is None]
    errors: list[str] = []
    if missing:
        batch = batched and algo in BATCHED_ALGORITHMS and len(missing) > 1
        how = " as seed-batched models" if batch else ""
        print(
            f"{algo} on {env}: training seeds {missing}{how} ({len(seeds) - len(missing)} already done)",
            file=sys.stderr,
        )
        # seeds with a checkpoint continue from it (the others start): what --resume does
        resume = any((out / f"seed_{s}" / "checkpoint" / "state.json").is_file() for s in missing)
        spec = TrainSpec(algo=algo, env=env, seed=missing[0], out=str(out), steps=steps, quiet=True, resume=resume)
        started = time.perf_counter()
        if batch:
            from pgrad.errors import ConfigError

            try:
                _, errors = run_seeds_batched(spec, missing, workers)
            except ConfigError as exc:  # reported like run_seeds' failures; the suite goes on
                errors = [f"{algo} on {env}: {exc}"]
        else:
            _, errors = run_seeds(spec, missing, workers=workers)
        processes = min(workers or os.cpu_count() or 1, len(missing))
        add_cost(out, time.perf_counter() - started, processes, missing)
    # the aggregate over every finished seed, not only those trained in this call
    done = {s: seed_summary(out / f"seed_{s}") for s in seeds}
    spec = TrainSpec(algo=algo, env=env, seed=seeds[0], out=str(out), steps=steps)
    write_json(out / "summary.json", aggregate(spec, seeds, {s: v for s, v in done.items() if v is not None}))
    return errors


def add_cost(out: Path, seconds: float, processes: int, seeds: list[int]) -> None:
    """Add one training call to ``out/cost.json``: its wall time, the processes it ran at once
    (each on a core of its own) and the seeds it trained, so that a row states what it cost."""
    from pgrad.io import write_json

    path = out / "cost.json"
    calls = json.loads(path.read_text()) if path.is_file() else []
    calls.append({"wall_seconds": round(seconds, 1), "processes": processes, "seeds": seeds})
    write_json(path, calls)


def core_hours(out: Path) -> float | None:
    """The core-hours the pair's training calls took (``out/cost.json``); None if not recorded."""
    path = out / "cost.json"
    if not path.is_file():
        return None
    return sum(call["wall_seconds"] * call["processes"] for call in json.loads(path.read_text())) / 3600.0


def table_row(algo: str, env: str, seeds: list[int], out: Path, stale: dict[int, list[str]]) -> dict:
    """One row of the suite table from the summary.json files of the seeds not in ``stale`` (:func:`stale_seeds`)."""
    import numpy as np

    from pgrad.experiments.stats import stratified_bootstrap_ci

    summaries = [
        s for s in (seed_summary(out / f"seed_{seed}") for seed in seeds if seed not in stale) if s is not None
    ]
    last100 = [
        s["last_100_episode_return_mean"] for s in summaries if s.get("last_100_episode_return_mean") is not None
    ]
    evals = [s["eval_mean_return"] for s in summaries if s.get("eval_mean_return") is not None]
    row = {
        "algo": algo,
        "env": env,
        "seeds_done": len(summaries),
        "seeds_asked": len(seeds),
        "seeds_stale": sorted(stale),
        "seed_role": seed_role(seeds),
        "steps": summaries[0]["steps"] if summaries else None,
        "goal": GOALS.get((algo, env)),
        "per_seed": [
            {
                "seed": s["seed"],
                "last_100": s.get("last_100_episode_return_mean"),
                "eval": s.get("eval_mean_return"),
            }
            for s in summaries
        ],
        "core_hours": core_hours(out),
    }
    if last100:
        row["iqm"], row["ci_low"], row["ci_high"] = stratified_bootstrap_ci([last100])
    if evals:
        row["eval_iqm"], row["eval_ci_low"], row["eval_ci_high"] = stratified_bootstrap_ci([evals])
    if summaries:
        row["wall_seconds_mean"] = float(np.mean([s["wall_seconds"] for s in summaries]))
    row["status"] = goal_status(row)
    return row


def goal_status(row: dict) -> str:
    """The row's verdict under the protocol: only enough evaluation seeds can meet a goal."""
    if row["goal"] is None:
        return "-"
    if "iqm" not in row:
        return f">= {row['goal']}: not run"
    if row["seed_role"] != "evaluation" or row["seeds_done"] < MIN_EVALUATION_SEEDS:
        return f">= {row['goal']}: not judged ({row['seed_role']} seeds, {row['seeds_done']} done)"
    return f">= {row['goal']}: {'met' if row['iqm'] >= row['goal'] else 'NOT met'}"


def format_table(rows: list[dict]) -> str:
    lines = [
        "| algo | env | budget | seeds | last-100 return: IQM [95% CI] | eval return: IQM [95% CI] | goal "
        "| wall s / seed | core-h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = f"{r['seeds_done']} {r['seed_role']}" + (
            "" if r["seeds_done"] == r["seeds_asked"] else f" of {r['seeds_asked']} asked"
        )
        if r["seeds_stale"]:
            seeds += f" ({len(r['seeds_stale'])} stale, not counted)"
        score = f"{r['iqm']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]" if "iqm" in r else "-"
        evaluation = (
            f"{r['eval_iqm']:.1f} [{r['eval_ci_low']:.1f}, {r['eval_ci_high']:.1f}]" if "eval_iqm" in r else "-"
        )
        budget = f"{r['steps']:,}" if r["steps"] else "-"
        wall = f"{r['wall_seconds_mean']:.0f}" if "wall_seconds_mean" in r else "-"
        cost = f"{r['core_hours']:.2f}" if r.get("core_hours") is not None else "-"
        cells = [r["algo"], r["env"], budget, seeds, score, evaluation, r["status"], wall, cost]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_seed_table(rows: list[dict]) -> str:
    """Every finished seed's last-100 training return / deterministic evaluation return."""
    lines = ["| algo | env | seed: last-100 / eval |", "|---|---|---|"]
    for r in rows:
        if r["per_seed"]:
            cells = ", ".join(
                f"{s['seed']}: {_number(s['last_100'])} / {_number(s['eval'])}"
                for s in sorted(r["per_seed"], key=lambda s: s["seed"])
            )
            lines.append(f"| {r['algo']} | {r['env']} | {cells} |")
    return "\n".join(lines)


def _interval(row: dict, point: str, low: str, high: str) -> str:
    return f"{row[point]:.1f} [{row[low]:.1f}, {row[high]:.1f}]" if point in row else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=ALGOS)
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument(
        "--seeds",
        nargs="+",
        default=["eval"],
        help="'eval' (1000-1009, the reported results; default), 'dev' (0-4, where presets are chosen) or integers",
    )
    parser.add_argument("--steps", type=int, default=None, help="budget per seed (default: each preset's)")
    parser.add_argument("--out", default="runs/suite")
    parser.add_argument("--workers", type=int, default=None, help="seeds trained at once (default: all cores)")
    parser.add_argument("--list", action="store_true", help="show the plan and what is done; train nothing")
    parser.add_argument(
        "--batched",
        action="store_true",
        help="PPO: train the seeds as seed-batched models (--workers processes), not one process each",
    )
    parser.add_argument("--no-report", action="store_true", help="skip `pgrad report` (figures)")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(args.seeds)

    root = Path(args.out)
    pairs = planned_pairs(args.algos, args.envs)
    errors: list[str] = []
    started = time.perf_counter()
    # training adds only seeds with the current settings, so what is stale now stays so
    stale = {(algo, env): stale_seeds(algo, env, args.seeds, args.steps, root / algo / env) for algo, env in pairs}
    if not args.list:
        for algo, env in pairs:
            errors += train_pair(
                algo, env, args.seeds, args.steps, root / algo / env, args.workers, args.batched, stale[algo, env]
            )
    rows = [table_row(algo, env, args.seeds, root / algo / env, stale[algo, env]) for algo, env in pairs]
    table = f"{PROTOCOL}\n\n{format_table(rows)}\n\nPer seed:\n\n{format_seed_table(rows)}"
    print(table)
    if args.list:  # (a training call reports stale seeds among its errors)
        for (algo, env), found in stale.items():
            if found:
                print(stale_message(algo, env, root / algo / env, found), file=sys.stderr)
        return 0
    root.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (root / "suite.md").write_text(f"Command: `{command}`\n\n{table}\n")
    (root / "suite.json").write_text(json.dumps(rows, indent=2))
    # the figures read every seed folder of a pair, so a pair with stale seeds stays out of them
    finished = [root / r["algo"] / r["env"] for r in rows if r["seeds_done"] and not r["seeds_stale"]]
    if finished and not args.no_report:
        from pgrad.experiments.report import write_report

        write_report(finished, root / "report.md")
    print(
        f"suite: {len(pairs)} pairs, {time.perf_counter() - started:.0f} s; table in {root / 'suite.md'}",
        file=sys.stderr,
    )
    for line in errors:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
