"""Does pgrad's fast PPO learn as Stable-Baselines3's does? Learning curves side by side (issue 7).

Trains PPO with benchmarks/speed.py's settings (the PPO paper's MuJoCo settings, identical on both
sides) for ``--steps`` per run, ``--seeds`` each, one subprocess per run, ``--jobs`` at a time,
and records every finished training episode (step, return). Then prints, per library, the mean
return of the last 100 training episodes of each seed and the steps per second of each run, and
draws both libraries' curves (mean over seeds of the 100-episode running mean, with the range
over seeds shaded) into ``--out`` (a PNG).

    .venv/bin/python benchmarks/same_learning.py --env HalfCheetah-v5 --steps 300000 --seeds 0 1 2 \
        --out docs/same_learning_halfcheetah.png

SB3 is the ``bench`` extra. Episode returns are the raw env returns (SB3's Monitor; pgrad's
episodes.csv), so the two are directly comparable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import NET, PGRAD_KWARGS, SB3_KWARGS  # noqa: E402  (the settings, spelled once)


def _train_pgrad(env_id: str, steps: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.PPO(env_id, seed=seed, **PGRAD_KWARGS["ppo"])
    steps_log, returns_log = [], []
    start = time.perf_counter()
    agent.learn(steps, quiet=True)
    wall = time.perf_counter() - start
    for row in agent.logger.episodes:
        steps_log.append(int(row["step"]))
        returns_log.append(float(row["return"]))
    agent.close()
    return {"steps": steps_log, "returns": returns_log, "sps": agent.total_steps / wall}


def _train_sb3(env_id: str, steps: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    class Episodes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[int] = []
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.steps.append(int(self.num_timesteps))
                    self.returns.append(float(info["episode"]["r"]))
            return True

    env = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    model = stable_baselines3.PPO(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        verbose=0,
        policy_kwargs=dict(
            net_arch=dict(pi=list(NET["hidden_sizes"]), vf=list(NET["hidden_sizes"])), activation_fn=torch.nn.Tanh
        ),
        **SB3_KWARGS["ppo"],
    )
    callback = Episodes()
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    wall = time.perf_counter() - start
    return {"steps": callback.steps, "returns": callback.returns, "sps": steps / wall}


def _run(library: str, env_id: str, steps: int, seed: int) -> dict:
    """One run in a fresh interpreter (its own torch thread setting and imports)."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        library,
        "--env",
        env_id,
        "--steps",
        str(steps),
        "--seeds",
        str(seed),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return {"library": library, "seed": seed, **json.loads(output.strip().splitlines()[-1])}


def _curve(steps: list[int], returns: list[float], grid, window: int = 100):
    import numpy as np

    running = (
        np.convolve(returns, np.ones(window), "valid") / window
        if len(returns) >= window
        else np.array([np.mean(returns)])
    )
    running_steps = np.asarray(steps[len(steps) - len(running) :])
    return np.interp(grid, running_steps, running, left=np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (speeds are only comparable at 1)")
    parser.add_argument("--out", default="same_learning.png", help="figure path (PNG)")
    parser.add_argument("--json", help="also write every run's episodes to this JSON file")
    parser.add_argument("--worker", choices=("pgrad", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train = _train_pgrad if args.worker == "pgrad" else _train_sb3
        print(json.dumps(train(args.env, args.steps, args.seeds[0])))
        return

    jobs = [(library, seed) for seed in args.seeds for library in ("pgrad", "sb3")]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: _run(job[0], args.env, args.steps, job[1]), jobs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0, args.steps, 200)
    figure, axes = plt.subplots(figsize=(7, 4.2))
    print(f"PPO {args.env}, {args.steps:,} steps per run, seeds {args.seeds}, settings of benchmarks/speed.py")
    print("| library | seed | last-100 training return | steps/s |")
    print("|---|---|---|---|")
    for library, colour in (("pgrad", "tab:blue"), ("sb3", "tab:orange")):
        mine = [run for run in runs if run["library"] == library]
        for run in mine:
            print(f"| {library} | {run['seed']} | {np.mean(run['returns'][-100:]):.1f} | {run['sps']:,.0f} |")
        curves = np.array([_curve(run["steps"], run["returns"], grid) for run in mine])
        label = {"pgrad": "pgrad", "sb3": "Stable-Baselines3"}[library]
        axes.plot(grid, np.nanmean(curves, 0), color=colour, label=f"{label} (mean of {len(mine)} seeds)")
        axes.fill_between(grid, np.nanmin(curves, 0), np.nanmax(curves, 0), color=colour, alpha=0.2)
        finals = [np.mean(run["returns"][-100:]) for run in mine]
        print(f"| {library} | mean | {np.mean(finals):.1f} | {np.mean([run['sps'] for run in mine]):,.0f} |")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return (mean of the last 100 training episodes)")
    axes.set_title(f"PPO on {args.env}, PPO-paper settings, range over seeds shaded")
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
