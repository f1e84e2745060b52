"""The rollout's per-step policy call, numpy against compiled: ``NumpyActorCritic.normalize_and_act``
with numba (pgrad/numpy_twin/compiled.py) and without (``PGRAD_NUMBA=0``), on the same policy, in
one process.

    .venv/bin/pip install -e '.[numba]'
    .venv/bin/python benchmarks/compiled_act.py --repeats 5

Each case builds one policy and two fused twins of it, as a rollout collector does: one acting
through the compiled kernels, one through numpy calls. They are timed in alternating rounds of
``--calls`` calls on the same raw observations (each call merges them into the running
statistics, where the policy has a normaliser), one torch thread; the script prints microseconds
per call, the median over rounds, and their ratio. That the two compute the same step (float32
rounding apart) is tests/unit/test_compiled_act.py's job, not this script's.

The cases: benchmarks/speed.py's PPO paper network on HalfCheetah-v5 (2x64 tanh, no observation
normaliser, one env), the same with the normaliser pgrad's MuJoCo presets use, the shipped PPO
HalfCheetah-v5 preset's network (2x256), and CartPole-v1 (categorical) with one env and with the
PPO preset's 8.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import PGRAD_KWARGS  # noqa: E402  (the one place the PPO paper settings are spelled)

PAPER = PGRAD_KWARGS["ppo"]
# name -> (env id, PPO keyword arguments, envs)
CASES = {
    "HalfCheetah-v5, PPO paper net (speed.py)": ("HalfCheetah-v5", PAPER, 1),
    "HalfCheetah-v5, PPO paper net + normaliser": ("HalfCheetah-v5", {**PAPER, "normalize_obs": True}, 1),
    "HalfCheetah-v5, shipped preset (2x256)": ("HalfCheetah-v5", {}, 1),
    "CartPole-v1, 1 env": ("CartPole-v1", {"n_envs": 1, "n_steps": 128, "batch_size": 64}, 1),
    "CartPole-v1, shipped preset (8 envs)": ("CartPole-v1", {}, 8),
}


def twins(policy):
    """(compiled, numpy) fused twins of ``policy``."""
    from pgrad.numpy_twin.policy import NumpyActorCritic

    compiled = NumpyActorCritic(policy, fused=True)
    os.environ["PGRAD_NUMBA"] = "0"
    try:
        plain = NumpyActorCritic(policy, fused=True)
    finally:
        del os.environ["PGRAD_NUMBA"]
    if compiled.compiled is None:
        raise SystemExit("the compiled step is off: install numba (pip install -e '.[numba]') and unset PGRAD_NUMBA")
    return compiled, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import pgrad

    print("| case | numpy twin, us/call | compiled, us/call | saved, us | ratio |\n|---|---|---|---|---|")
    for name, (env_id, kwargs, n_envs) in CASES.items():
        agent = pgrad.PPO(env_id, seed=0, **kwargs)
        compiled, plain = twins(agent.policy)
        raw = np.random.default_rng(0).normal(size=(n_envs, agent.policy.obs_size))
        compiled.normalize_and_act(raw)  # compile (or load numba's cache) before timing
        times: dict[str, list[float]] = {"numpy": [], "compiled": []}
        for _ in range(args.repeats):
            for label, twin in (("numpy", plain), ("compiled", compiled)):
                start = time.perf_counter()
                for _ in range(args.calls):
                    twin.normalize_and_act(raw)
                times[label].append((time.perf_counter() - start) / args.calls * 1e6)
        numpy_us, compiled_us = statistics.median(times["numpy"]), statistics.median(times["compiled"])
        saved, ratio = numpy_us - compiled_us, numpy_us / compiled_us
        print(f"| {name} | {numpy_us:.2f} | {compiled_us:.2f} | {saved:.2f} | {ratio:.2f}x |")
        agent.close()


if __name__ == "__main__":
    main()
