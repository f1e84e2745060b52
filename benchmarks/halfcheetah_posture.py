"""What trained HalfCheetah policies do with their body: upright and running, or flipped over.

HalfCheetah's known trap: a policy can throw the cheetah onto its back, where it cannot right
itself; episodes never end early, so the run goes on learning from that posture. This reads
trained run folders and reports, per run, the deterministic return and the posture over the
episodes: the fraction of steps whose torso pitch (observation 1, the root's rotation about y,
in radians, wrapped to [-pi, pi); 0 upright) exceeds pi/2 in size, its mean size, and the mean forward velocity
(observation 8, the root's x velocity).

    .venv/bin/python benchmarks/halfcheetah_posture.py runs/suite-eval/a2c/HalfCheetah-v5/seed_*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PITCH, FORWARD_VELOCITY = 1, 8  # HalfCheetah-v5 observation entries (qpos[2], qvel[0])


def wrapped_pitch(pitch: np.ndarray) -> np.ndarray:
    """The torso's pitch in [-pi, pi): the hinge angle is not wrapped, so a cheetah that rolled
    over once reads 2 pi when it is upright again."""
    return (pitch + np.pi) % (2 * np.pi) - np.pi


def posture(run: Path, episodes: int, first_reset_seed: int) -> dict:
    """Deterministic episodes of the run's policy on raw observations: return and posture figures."""
    import gymnasium as gym

    import pgrad

    agent = pgrad.load(run)
    env = gym.make("HalfCheetah-v5")
    returns, pitches, velocities = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=first_reset_seed + episode)
        total, done = 0.0, False
        while not done:
            action = agent.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            pitches.append(obs[PITCH])
            velocities.append(obs[FORWARD_VELOCITY])
            done = terminated or truncated
        returns.append(total)
    env.close()
    pitch = np.abs(wrapped_pitch(np.asarray(pitches)))
    return {
        "run": str(run),
        "return": round(float(np.mean(returns)), 1),
        "flipped_fraction": round(float(np.mean(pitch > np.pi / 2)), 3),
        "mean_abs_pitch": round(float(np.mean(pitch)), 2),
        "forward_velocity": round(float(np.mean(velocities)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained HalfCheetah-v5 run folders")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--reset-seed", type=int, default=10000, help="first episode's reset seed")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for run in args.runs:
        print(json.dumps(posture(run, args.episodes, args.reset_seed)), flush=True)


if __name__ == "__main__":
    main()
