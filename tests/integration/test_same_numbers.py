"""Short runs of every algorithm must keep computing the numbers they computed when this file's
reference (tests/data/same_numbers.json) was written: the guard that a refactor changed nothing.

A run repeats bit for bit on one CPU model, not across them (float rounding of BLAS differs), and
the rollout step compiled with numba (pgrad/numpy_twin/compiled.py) rounds differently from the
numpy one, so the comparison is to 1e-4 relative: far tighter than any change of behaviour, far
looser than rounding over a few updates (explained variance, ill-conditioned here, to 1e-2).
The episodes of these short runs are compared exactly where they are integers (steps, lengths).
benchmarks/bit_identity.py does the bit-exact check on one machine.

Regenerate the reference only for a deliberate change of behaviour, and say so in the commit:
``python tests/integration/test_same_numbers.py --write``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import pgrad
from pgrad.algos.ppo_batched import SeedBatchedPPO

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "same_numbers.json"
TIMING = {"wall_time", "sps"}

# name -> (algorithm, env, settings, steps); each a few updates, seconds in all
CASES = {
    "ppo-cartpole": (pgrad.PPO, "CartPole-v1", dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=2), 768),
    "ppo-pendulum-normalized": (
        pgrad.PPO,
        "Pendulum-v1",
        dict(n_envs=2, n_steps=128, batch_size=64, n_epochs=2, normalize_reward=True),
        768,
    ),
    "a2c-pendulum": (pgrad.A2C, "Pendulum-v1", dict(n_envs=2, n_steps=8), 480),
    "actor-critic-cartpole": (pgrad.ActorCritic, "CartPole-v1", dict(n_envs=2), 300),
    "reinforce-cartpole": (pgrad.Reinforce, "CartPole-v1", dict(episodes_per_update=2), 300),
    "ppo-lstm-cartpolenovel": (
        pgrad.RecurrentPPO,
        "pgrad/CartPoleNoVel-v1",
        dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2),
        384,
    ),
    "ars-pendulum": (pgrad.ARS, "Pendulum-v1", dict(n_directions=2, n_workers=0, eval_every=1, eval_episodes=1), 2400),
}
BATCHED = ("Pendulum-v1", [0, 1], dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2), 640)


def _record(agent) -> dict:
    metrics = [{k: v for k, v in row.items() if k not in TIMING} for row in agent.logger.metrics]
    return {"episodes": list(agent.logger.episodes), "metrics": metrics}


def run_case(name: str) -> dict:
    if name == "ppo-batched-pendulum":
        env, seeds, settings, steps = BATCHED
        batched = SeedBatchedPPO(env, seeds, preset="none", **settings).learn(steps)
        batched.close()
        return {f"seed_{seed}": _record(agent) for seed, agent in zip(seeds, batched.agents)}
    algorithm, env, settings, steps = CASES[name]
    agent = algorithm(env, seed=0, preset="none", **settings)
    agent.learn(steps, quiet=True)
    agent.close()
    return _record(agent)


ALL_CASES = [*CASES, "ppo-batched-pendulum"]


def _relative_tolerance(where: str) -> float:
    """1e-4, except for explained variance: 1 - Var[R - V] / Var[R] over one update's few returns
    (two per update in actor-critic-cartpole) divides two small, nearly cancelling variances, and
    amplifies a rounding difference in the values to ~1e-4 relative (9e-5 measured with the numpy
    rollout step on this machine, 2e-4 with the compiled one, against the others' 4e-6 at most)."""
    return 1e-2 if where.endswith(".explained_variance") else 1e-4


def _close(mine, theirs, where: str) -> None:
    if isinstance(theirs, dict):
        assert mine.keys() == theirs.keys(), where
        for key in theirs:
            _close(mine[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert len(mine) == len(theirs), f"{where}: {len(mine)} rows, the reference has {len(theirs)}"
        for index, (a, b) in enumerate(zip(mine, theirs)):
            _close(a, b, f"{where}[{index}]")
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(mine, float) and math.isnan(mine), where
    elif isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        assert mine == pytest.approx(theirs, rel=_relative_tolerance(where), abs=1e-6), f"{where}: {mine} != {theirs}"
    else:
        assert mine == theirs, where


@pytest.mark.parametrize("name", ALL_CASES)
def test_short_runs_compute_the_reference_numbers(name):
    reference = json.loads(REFERENCE.read_text())
    _close(json.loads(json.dumps(run_case(name))), reference[name], name)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps({name: run_case(name) for name in ALL_CASES}, indent=1) + "\n")
    print(f"wrote {REFERENCE}")
