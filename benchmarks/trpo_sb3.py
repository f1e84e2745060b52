"""pgrad's TRPO beside sb3-contrib's at one of pgrad's RL Zoo TRPO presets: does pgrad's TRPO learn
comparably on the same env, settings, budget and seeds?

Run (each side and seed in turn, one core each; sb3-contrib is never a pgrad dependency):
    pip install sb3-contrib    # the version matching the installed stable-baselines3
    .venv/bin/python benchmarks/trpo_sb3.py Hopper-v5 --steps 100000 --seeds 0 1

The preset is read from ``pgrad/presets/trpo.toml`` (one spelling) and mapped to sb3-contrib's
names as that file's header describes, including its one conversion: for a Box action of d
dimensions sb3-contrib's KL is the mean over the dimensions, pgrad's their sum, so
``target_kl = max_kl / d`` and sb3-contrib's ``cg_damping`` is pgrad's divided by d.
A key pgrad tuned on top of the Zoo's entry (``PGRAD_ONLY``: HalfCheetah-v5's ``log_std_init``) is
not passed on, so sb3-contrib runs the Zoo's entry as published; ``--sb3-log-std-init`` gives it
pgrad's value instead, to separate the setting's effect from the implementation's.
VecNormalize normalises observations and rewards during training for sb3-contrib (the Zoo's
``normalize: true``), which pgrad's ``normalize_obs`` and ``normalize_reward`` do. Printed: one
JSON line per side and seed with a 10-episode deterministic evaluation (raw rewards, frozen
statistics, reset seeds 10000-10009, as ``pgrad.evaluate``), the mean return of the last 100
training episodes, and the wall time; then a table per side of the IQM over seeds with its 95%
stratified bootstrap interval. ``--table LOG ...`` makes that table from saved output (the two
sides may run in separate invocations, one core each):

    .venv/bin/python benchmarks/trpo_sb3.py Hopper-v5 --steps 1000000 --seeds 1000 1001 --sides pgrad > pgrad.log
    .venv/bin/python benchmarks/trpo_sb3.py --table pgrad.log sb3.log
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

PRESETS = Path(__file__).resolve().parents[1] / "pgrad" / "presets" / "trpo.toml"
# pgrad preset key -> sb3-contrib TRPO argument
SB3_NAMES = {
    "n_steps": "n_steps",
    "batch_size": "batch_size",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
    "lr": "learning_rate",
    "max_kl": "target_kl",
    "cg_iters": "cg_max_steps",
    "cg_damping": "cg_damping",
    "n_critic_epochs": "n_critic_updates",
    "line_search_steps": "line_search_max_iter",
    "line_search_shrink": "line_search_shrinking_factor",
}
HANDLED = {"source", "steps", "n_envs", "normalize_obs", "normalize_reward"}
# pgrad's own tuning on top of the Zoo's entry: sb3-contrib runs the Zoo's entry without it (its
# MlpPolicy's log_std_init 0) unless --sb3-log-std-init gives it one
PGRAD_ONLY = {"log_std_init"}


def sb3_arguments(preset: dict, kl_dimensions: int) -> dict:
    """sb3-contrib TRPO keyword arguments for a pgrad TRPO preset table; refuses what it cannot map.
    ``kl_dimensions``: the d that sb3-contrib averages its KL over (a Box action's size, else 1)."""
    unknown = set(preset) - set(SB3_NAMES) - HANDLED - PGRAD_ONLY
    if unknown:
        raise SystemExit(f"cannot map {sorted(unknown)} to sb3-contrib's TRPO")
    # pgrad's defaults where the preset sets none (the same as sb3-contrib's, before the conversion)
    values = {"max_kl": 0.01, "cg_damping": 0.1, **preset}
    for key in ("max_kl", "cg_damping"):
        values[key] = round(values[key] / kl_dimensions, 12)  # 0.1, not 0.09999999999999999
    return {SB3_NAMES[key]: value for key, value in values.items() if key in SB3_NAMES}


def run_pgrad(env_id: str, seed: int, steps: int) -> dict:
    import pgrad

    agent = pgrad.TRPO(env_id, seed=seed)  # the env's preset from trpo.toml
    start = time.perf_counter()
    agent.learn(steps, quiet=True)
    seconds = time.perf_counter() - start
    evaluation = pgrad.evaluate(agent, episodes=10)
    last_100 = agent.logger.recent_return
    agent.close()
    return {"eval_mean_return": evaluation["mean_return"], "last_100": last_100, "wall_seconds": seconds}


def run_sb3(env_id: str, seed: int, steps: int, preset: dict, log_std_init: float | None) -> dict:
    import gymnasium as gym
    from sb3_contrib import TRPO
    from sb3_evaluation import evaluate_like_pgrad
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    probe = gym.make(env_id)
    box = isinstance(probe.action_space, gym.spaces.Box)
    kwargs = sb3_arguments(preset, int(np.prod(probe.action_space.shape)) if box else 1)
    probe.close()
    if log_std_init is not None:
        kwargs["policy_kwargs"] = {"log_std_init": log_std_init}
    print(json.dumps({"side": "sb3-contrib", "arguments": kwargs}), flush=True)
    monitors = [Monitor(gym.make(env_id)) for _ in range(preset.get("n_envs", 1))]
    venv = VecNormalize(
        DummyVecEnv([lambda monitor=monitor: monitor for monitor in monitors]),
        norm_obs=preset.get("normalize_obs", True),
        norm_reward=preset.get("normalize_reward", False),
        gamma=kwargs.get("gamma", 0.99),
    )
    model = TRPO("MlpPolicy", venv, seed=seed, device="cpu", **kwargs)
    start = time.perf_counter()
    model.learn(steps)
    seconds = time.perf_counter() - start
    returns = evaluate_like_pgrad(model, venv, env_id)
    # the last 100 episodes to finish, over all envs, in the order they ended
    ends = sorted(
        (time_ended, reward)
        for monitor in monitors
        for time_ended, reward in zip(monitor.get_episode_times(), monitor.get_episode_rewards(), strict=True)
    )
    last_100 = float(np.mean([reward for _, reward in ends[-100:]]))
    return {"eval_mean_return": float(np.mean(returns)), "last_100": last_100, "wall_seconds": seconds}


def format_table(rows: list[dict]) -> str:
    """Per env, side and budget: the IQM with its 95% stratified bootstrap interval over seeds of the
    last-100 training return and of the deterministic evaluation, and the mean wall time per seed."""
    from pgrad.experiments.stats import permutation_p_value, stratified_bootstrap_ci

    lines = [
        "| env | side | steps | seeds | last-100 IQM [95% CI] | eval IQM [95% CI] | wall s per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["env"], row["side"], row["steps"]), []).append(row)
    for (env, side, steps), group in groups.items():
        cells = []
        for key in ("last_100", "eval_mean_return"):
            point, low, high = stratified_bootstrap_ci([[row[key] for row in group]])
            cells.append(f"{point:.1f} [{low:.1f}, {high:.1f}]")
        seeds = " ".join(str(row["seed"]) for row in group)
        wall = np.mean([row["wall_seconds"] for row in group])
        lines.append(f"| {env} | {side} | {steps:,} | {seeds} | {cells[0]} | {cells[1]} | {wall:.0f} |")
    # each pair of sides on one env and budget: does the mean differ? (exact, so few seeds are fine)
    keys = list(groups)  # (env, side, steps)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if (first[0], first[2]) != (second[0], second[2]):  # another env or budget
                continue
            p_values = [
                permutation_p_value([row[key] for row in groups[first]], [row[key] for row in groups[second]])
                for key in ("last_100", "eval_mean_return")
            ]
            lines.append(
                f"\n{first[0]}: {first[1]} against {second[1]}, exact permutation p of equal means: "
                f"last-100 {p_values[0]:.2g}, eval {p_values[1]:.2g}"
            )
    return "\n".join(lines)


def read_logs(paths: list[Path]) -> list[dict]:
    """The per-seed JSON lines this script printed, from saved logs (other lines are skipped)."""
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                if "seed" in row and "last_100" in row:
                    rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env", nargs="?")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sides", nargs="+", default=["pgrad", "sb3-contrib"], choices=["pgrad", "sb3-contrib"])
    parser.add_argument(
        "--sb3-log-std-init",
        type=float,
        help="sb3-contrib's initial log std (default: its MlpPolicy's 0, the Zoo's), e.g. pgrad's preset's",
    )
    parser.add_argument(
        "--table", nargs="+", type=Path, metavar="LOG", help="tabulate saved output of earlier runs; train nothing"
    )
    args = parser.parse_args()
    if args.table:
        print(format_table(read_logs(args.table)))
        return
    if args.env is None:
        parser.error("an env id is needed (or --table LOG ...)")
    torch.set_num_threads(1)
    preset = tomllib.loads(PRESETS.read_text())[args.env]
    rows = []
    for side in args.sides:
        for seed in args.seeds:
            if side == "pgrad":
                result = run_pgrad(args.env, seed, args.steps)
            else:
                result = run_sb3(args.env, seed, args.steps, preset, args.sb3_log_std_init)
            rounded = {key: round(value, 1) for key, value in result.items()}
            label = side
            if side == "sb3-contrib" and args.sb3_log_std_init is not None:
                label = f"sb3-contrib log_std_init={args.sb3_log_std_init}"
            rows.append({"side": label, "env": args.env, "seed": seed, "steps": args.steps, **rounded})
            print(json.dumps(rows[-1]), flush=True)
    print(format_table(rows))


if __name__ == "__main__":
    main()
