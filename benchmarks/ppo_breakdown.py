"""Where one env step of PPO goes, against the simulator: the parts behind the overhead factor.

    .venv/bin/python benchmarks/ppo_breakdown.py                      # HalfCheetah-v5, PPO paper settings
    .venv/bin/python benchmarks/ppo_breakdown.py --env Hopper-v5 --repeats 7

``benchmarks/speed.py`` measures the overhead factor of whole runs (wall time per env step over
the raw env's). This script takes one such run apart, in one process and one torch thread, with
benchmarks/speed.py's PPO settings (the PPO paper's: 1 env, 2048 steps per rollout, 10 epochs of
minibatches of 64, separate 2x64 tanh actor and critic) after one warm-up iteration. The act, the
gradient and the Adam step are the ones a run uses: compiled where numba is installed
(pgrad/numpy_twin/compiled.py), numpy calls with ``PGRAD_NUMBA=0``:

* ``raw env step``: ``gymnasium.make(env).step`` with pre-drawn random actions (speed.py's ``raw``);
* the rollout, per env step: ``collect(2048)`` in all, and separately the pieces of one step as
  ``collect`` runs them: pgrad's vector env around the same env with the same actions (``envs.step``), the twin's
  normalisation, action, value and map to the env's action written into the step's row
  (``act_into``, the noise drawn ahead as ``collect`` draws it), and ``step_into`` whole, whose
  rest is the step's own bookkeeping (episode counters, flags, checks); what ``collect`` adds
  beyond ``step_into`` is its loop and buffers. Each piece is timed in a loop of its own, where
  it runs with warm caches: inside ``collect`` the simulator and the policy evict each other's
  code and data, which shows up in the bookkeeping and loop rows (BENCHMARKS.md, "The
  collector's step compiled");
* the update, per minibatch: the gradient (``step_gradient``) and the Adam step, and,
  as a floor, only the matrix products of that minibatch's forward and backward passes (the
  same shapes, the same BLAS), which any implementation of these networks on this CPU pays;
* per env step, the update's share: per-minibatch cost x epochs x minibatches / rollout length.

It prints each part in microseconds per env step (medians over ``--repeats``) and three overhead
factors: pgrad's as measured, what it would be with no bookkeeping at all (raw step + act +
the vector env + the update), and the arithmetic floor (raw step + the matrix
products of inference and update). The machine may be shared: compare the parts with each
other within one invocation, not with figures from another day.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import PGRAD_KWARGS  # noqa: E402  (the one place the PPO paper settings are spelled)


def per_call_us(function, calls: int) -> float:
    """Mean wall time of ``function()`` over ``calls`` calls after one untimed call, in us."""
    function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def matmul_only_minibatch(gradient, batch: int, rng) -> float:
    """us for the matrix products alone of one minibatch's forward and backward passes through
    the actor and the critic: the arithmetic every implementation of these networks pays."""
    import numpy as np

    from pgrad.numpy_twin.layers import Dense

    shapes = []  # (rows, inner, cols) of every product
    for network in (gradient.actor, gradient.critic):
        dense = [layer for layer in network if isinstance(layer, Dense)]
        for index, layer in enumerate(dense):
            out_features, in_features = layer.weight.shape
            shapes.append((batch, in_features, out_features))  # forward x @ W.T
            shapes.append((out_features, batch, in_features))  # weight gradient grad.T @ x
            shapes.append((1, batch, out_features))  # bias gradient ones @ grad
            if index > 0:
                shapes.append((batch, out_features, in_features))  # input gradient grad @ W
    operands = [
        (rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32))
        for m, k, n in shapes
    ]

    def products() -> None:
        for left, right in operands:
            left @ right

    return per_call_us(products, 2000)


def measure(env_id: str, seed: int) -> dict[str, float]:
    import gymnasium as gym
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import pgrad
    from pgrad.algos.ppo import loss_settings
    from pgrad.numpy_twin.layers import Dense
    from pgrad.rollout import EpisodeLog, RolloutBuffers

    agent = pgrad.PPO(env_id, seed=seed, **PGRAD_KWARGS["ppo"])
    config = agent.config
    agent.learn(config.n_steps, quiet=True)  # warm-up: first rollout and update
    collector, twin = agent.collector, agent.collector.fast
    if twin is None:
        raise SystemExit("this policy has no numpy twin; the breakdown covers the fast path only")
    parts: dict[str, float] = {}

    raw = gym.make(env_id)
    raw.reset(seed=seed)
    raw.action_space.seed(seed)
    actions = [raw.action_space.sample() for _ in range(1000)]
    count = [0]

    def raw_step() -> None:
        count[0] += 1
        _, _, terminated, truncated, _ = raw.step(actions[count[0] % 1000])
        if terminated or truncated:
            raw.reset()

    parts["raw env step"] = per_call_us(raw_step, 4000)
    start = time.perf_counter()
    collector.collect(config.n_steps)
    parts["collect, all"] = (time.perf_counter() - start) / config.n_steps * 1e6

    # What collect() runs each step, as it runs it: the policy's call written into the step's row
    # (compiled where numba is installed), with the rollout's noise drawn before the loop
    # (NumpyActorCritic.draw_noise_ahead; per_call_us makes calls + 1 calls).
    buffers = RolloutBuffers.allocate(config.n_steps, collector.n_envs, agent.policy)
    row = [0]

    def act_into() -> None:
        twin.act_into(collector.obs, buffers, row[0])
        row[0] = (row[0] + 1) % config.n_steps

    twin.draw_noise_ahead(4001, collector.n_envs)
    parts["act (normalise, forward, sample, env action)"] = per_call_us(act_into, 4000)
    # the raw step's actions (one fixed action would be other physics: a constant HalfCheetah-v5
    # action costs ~4 us more per step than random ones)
    batch_actions = [np.repeat(action[None], collector.n_envs, axis=0) for action in actions]

    def vector_step() -> None:
        count[0] += 1
        collector.envs.step(batch_actions[count[0] % 1000])

    parts["envs.step (pgrad's vector env + recorder + env)"] = per_call_us(vector_step, 4000)
    episodes = EpisodeLog()

    def step_into() -> None:
        collector.step_into(buffers, row[0], episodes)
        row[0] = (row[0] + 1) % config.n_steps

    twin.draw_noise_ahead(4001, collector.n_envs)
    parts["collector.step_into"] = per_call_us(step_into, 4000)
    collector.obs, _ = collector.envs.reset(seed=seed)  # the steps above left episodes mid-way

    # one minibatch of the update, on real rollout rows
    rollout, _ = collector.collect(config.n_steps)
    advantages, returns = rollout.gae(config.gamma, config.gae_lambda)
    rows = slice(0, config.batch_size)
    minibatch = [
        tensor.reshape(-1, *tensor.shape[2:])[rows].numpy()
        for tensor in (rollout.obs, rollout.actions, rollout.log_probs, rollout.values, advantages, returns)
    ]
    gradient = agent._numpy_gradient
    adam = agent._numpy_adam
    settings = loss_settings(config)
    parts["step_gradient, per minibatch"] = per_call_us(lambda: gradient.step_gradient(*minibatch, **settings), 2000)
    parts["Adam, per minibatch"] = per_call_us(adam.step, 2000)
    rng = np.random.default_rng(seed)
    parts["matrix products only, per minibatch"] = matmul_only_minibatch(gradient, config.batch_size, rng)
    dense = [layer for layer in twin.fused if isinstance(layer, Dense)]
    inference_operands = [
        (
            rng.standard_normal((1, layer.weight_t.shape[0])).astype(np.float32),
            np.ascontiguousarray(layer.weight_t),
        )
        for layer in dense
    ]

    def inference_products() -> None:
        for left, right in inference_operands:
            left @ right

    parts["matrix products only, inference per step"] = per_call_us(inference_products, 4000)
    parts["minibatches per env step"] = config.n_epochs * (config.n_steps // config.batch_size) / config.n_steps
    agent.close()
    raw.close()
    return parts


def report(runs: list[dict[str, float]]) -> None:
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    per_step_update = median["minibatches per env step"] * (
        median["step_gradient, per minibatch"] + median["Adam, per minibatch"]
    )
    per_step_products = (
        median["minibatches per env step"] * median["matrix products only, per minibatch"]
        + median["matrix products only, inference per step"]
    )
    raw = median["raw env step"]
    vector_env = median["envs.step (pgrad's vector env + recorder + env)"] - raw
    bookkeeping = median["collector.step_into"] - (
        median["envs.step (pgrad's vector env + recorder + env)"]
        + median["act (normalise, forward, sample, env action)"]
    )
    rows = [
        ("raw env step (gymnasium.make)", raw),
        ("pgrad's vector env + recorder, beyond the raw step", vector_env),
        (
            "act (normalise, fused forward, sample, env action; compiled where numba is installed)",
            median["act (normalise, forward, sample, env action)"],
        ),
        ("the step's bookkeeping (counters, flags, checks)", bookkeeping),
        ("collect's loop and buffers", median["collect, all"] - median["collector.step_into"]),
        ("update share (step_gradient + Adam)", per_step_update),
    ]
    total = median["collect, all"] + per_step_update
    print(f"{len(runs)} repeats, medians, us per env step")
    print("| part | us per env step | share |")
    print("|---|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.1f} | {value / total:.0%} |")
    print(f"| total (collect + update share) | {total:.1f} | 100% |")
    print()
    print(
        f"per minibatch: step_gradient {median['step_gradient, per minibatch']:.0f} us, Adam "
        f"{median['Adam, per minibatch']:.0f} us, of which matrix products "
        f"{median['matrix products only, per minibatch']:.0f} us"
    )
    without_bookkeeping = total - bookkeeping - (median["collect, all"] - median["collector.step_into"])
    print(f"overhead factor, measured: {total / raw:.2f}")
    print(f"overhead factor with no bookkeeping or buffers at all: {without_bookkeeping / raw:.2f}")
    arithmetic = (raw + per_step_products) / raw
    print(f"overhead factor of the arithmetic alone (raw step + matrix products): {arithmetic:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report([measure(args.env, args.seed + repeat) for repeat in range(args.repeats)])


if __name__ == "__main__":
    main()
