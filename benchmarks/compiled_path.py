"""The compiled path against the numpy one, piece by piece: one policy's rollout step
(``NumpyActorCritic.normalize_and_act``), minibatch gradient (``NumpyPolicyGradient.step_gradient``)
and Adam step (``NumpyAdam.step``), each with numba (pgrad/numpy_twin/compiled.py) and without
(built under ``PGRAD_NUMBA=0``), on the same policy, in one process.

    .venv/bin/pip install -e '.[numba]'
    .venv/bin/python benchmarks/compiled_path.py --repeats 5

Each case builds one policy and, for each piece, a compiled and a numpy instance of it. The two
are timed in alternating rounds of ``--calls`` calls on the same inputs (one torch thread, one
BLAS thread); the script prints microseconds per call, the median over rounds, and their ratio.
That the two compute the same numbers (float32 rounding apart; Adam to the bit) is the tests'
job (tests/unit/test_compiled_act.py, test_fast_update.py), not this script's.

Rollout-step cases: benchmarks/speed.py's PPO paper network on HalfCheetah-v5 (2x64 tanh, no
observation normaliser, one env), the same with the normaliser pgrad's MuJoCo presets use, the
shipped PPO HalfCheetah-v5 preset's network (2x256), and CartPole-v1 (categorical) with one env
and with the PPO preset's 8. Update cases: the PPO paper network and settings on HalfCheetah-v5
(minibatch 64), and the CartPole-v1 preset (minibatch 256), with random minibatches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import PGRAD_KWARGS  # noqa: E402  (the one place the PPO paper settings are spelled)

PAPER = PGRAD_KWARGS["ppo"]
# name -> (env id, PPO keyword arguments, envs)
STEP_CASES = {
    "HalfCheetah-v5, PPO paper net (speed.py)": ("HalfCheetah-v5", PAPER, 1),
    "HalfCheetah-v5, PPO paper net + normaliser": ("HalfCheetah-v5", {**PAPER, "normalize_obs": True}, 1),
    "HalfCheetah-v5, shipped preset (2x256)": ("HalfCheetah-v5", {}, 1),
    "CartPole-v1, 1 env": ("CartPole-v1", {"n_envs": 1, "n_steps": 128, "batch_size": 64}, 1),
    "CartPole-v1, shipped preset (8 envs)": ("CartPole-v1", {}, 8),
}
# name -> (env id, PPO keyword arguments)
UPDATE_CASES = {
    "HalfCheetah-v5, PPO paper net and settings (minibatch 64)": ("HalfCheetah-v5", PAPER),
    "CartPole-v1, shipped preset (minibatch 256)": ("CartPole-v1", {}),
}


def both(build: Callable):
    """(compiled, numpy) results of ``build()``, the second built with ``PGRAD_NUMBA=0``."""
    compiled = build()
    os.environ["PGRAD_NUMBA"] = "0"
    try:
        plain = build()
    finally:
        del os.environ["PGRAD_NUMBA"]
    return compiled, plain


def timed(calls: dict[str, Callable], repeats: int, n: int) -> dict[str, float]:
    """Median microseconds per call of each function, timed in alternating rounds."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # compile (or load numba's cache) before timing
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(n):
                call()
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def row(name: str, numpy_us: float, compiled_us: float) -> str:
    saved, ratio = numpy_us - compiled_us, numpy_us / compiled_us
    return f"| {name} | {numpy_us:.2f} | {compiled_us:.2f} | {saved:.2f} | {ratio:.2f}x |"


def minibatch(agent, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A random minibatch in the shapes and dtypes PPO's update passes (advantages normalised)."""
    policy = agent.policy
    obs = rng.normal(size=(batch, policy.obs_size)).astype(np.float32)
    with torch.no_grad():
        dist = policy.distribution(torch.from_numpy(obs))
        actions = dist.sample()
        old_log_probs = (dist.log_prob(actions) + torch.randn(batch) * 0.1).numpy()
    advantages = rng.normal(size=batch).astype(np.float32)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    values = rng.normal(size=batch).astype(np.float32)
    returns = values + rng.normal(size=batch).astype(np.float32)
    return obs, actions.numpy(), old_log_probs.astype(np.float32), values, advantages.astype(np.float32), returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5_000)
    args = parser.parse_args()
    import pgrad
    from pgrad.algos.ppo import loss_settings
    from pgrad.numpy_twin import NumpyOptimizer, NumpyPolicyGradient
    from pgrad.numpy_twin.policy import NumpyActorCritic

    header = "| {} | numpy, us/call | compiled, us/call | saved, us | ratio |\n|---|---|---|---|---|"
    print(header.format("rollout step (normalize_and_act)"))
    for name, (env_id, kwargs, n_envs) in STEP_CASES.items():
        agent = pgrad.PPO(env_id, seed=0, **kwargs)  # sets one torch thread and one BLAS thread
        compiled, plain = both(lambda policy=agent.policy: NumpyActorCritic(policy, fused=True))
        if compiled.compiled is None or plain.compiled is not None:
            raise SystemExit("the compiled path is off: install numba (pip install -e '.[numba]'), unset PGRAD_NUMBA")
        raw = np.random.default_rng(0).normal(size=(n_envs, agent.policy.obs_size))
        calls = {
            twin_name: (lambda twin=twin, raw=raw: twin.normalize_and_act(raw))
            for twin_name, twin in (("numpy", plain), ("compiled", compiled))
        }
        us = timed(calls, args.repeats, args.calls)
        print(row(name, us["numpy"], us["compiled"]))
        agent.close()

    print("\n" + header.format("minibatch update, one piece at a time"))
    for name, (env_id, kwargs) in UPDATE_CASES.items():
        built = {}
        for kind, flag in (("compiled", "1"), ("numpy", "0")):
            os.environ["PGRAD_NUMBA"] = flag
            try:  # an agent of its own each: two Adam twins must not share one optimizer's state
                agent = pgrad.PPO(env_id, seed=0, **kwargs)
                gradient = NumpyPolicyGradient(agent.policy)
                gradient.bind()
                adam = NumpyOptimizer.reuse_or_build(agent.optimizer, gradient, None)
                adam.prepare()
            finally:
                del os.environ["PGRAD_NUMBA"]
            if (gradient.compiled is None) != (kind == "numpy") or (adam.kernels is None) != (kind == "numpy"):
                raise SystemExit(
                    "the compiled path is off: install numba (pip install -e '.[numba]'), unset PGRAD_NUMBA"
                )
            batch = minibatch(agent, agent.config.batch_size, np.random.default_rng(0))
            built[kind] = (agent, gradient, adam, batch, loss_settings(agent.config))
        gradient_us = timed(
            {kind: lambda g=g, b=b, s=s: g.step_gradient(*b, **s) for kind, (_, g, _, b, s) in built.items()},
            args.repeats, args.calls,
        )  # fmt: skip
        adam_us = timed({kind: adam.step for kind, (_, _, adam, _, _) in built.items()}, args.repeats, args.calls)
        print(row(f"{name}: gradient", gradient_us["numpy"], gradient_us["compiled"]))
        print(row(f"{name}: Adam step", adam_us["numpy"], adam_us["compiled"]))
        for agent, *_ in built.values():
            agent.close()


if __name__ == "__main__":
    main()
