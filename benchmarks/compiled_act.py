"""What compiling the rollout's per-step policy call would buy: the numpy twin's ``normalize`` +
``act`` against the same maths compiled by numba, on one HalfCheetah-v5 observation.

    pip install numba    # not a pgrad dependency; only this measurement needs it
    .venv/bin/python benchmarks/compiled_act.py --repeats 5

The question behind it (BENCHMARKS.md, issue 25): the overhead factor is held up by ~30 numpy
calls per env step in the twin's act, each costing more than its arithmetic. A compiled act does
the same work in one call. Measured here, in one process and one torch thread, after compiling:
the twin's ``normalize(obs, update=True)`` then ``act`` (PPO on HalfCheetah-v5 at
benchmarks/speed.py's PPO paper settings: 2x64 tanh actor and critic, fused; with the
observation normaliser pgrad's MuJoCo presets use) against one numba function doing the same
(merge the row into the running statistics, normalise and clip, the fused forward with its
matrix products through BLAS (numba calls SciPy's, the twin numpy's), the Gaussian sample from
the same torch noise and its log-probability). The two are first checked to agree to float
rounding on the same statistics and noise; then they are timed in interleaved rounds; the script
prints microseconds per call (median over rounds) and their ratio. It does not change pgrad: it
measures a design alternative.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import PGRAD_KWARGS  # noqa: E402  (the one place the PPO paper settings are spelled)


def compiled_act_function():
    """The numba-compiled normalise + act for one row and a fused 3-layer tanh MLP."""
    import numba

    @numba.njit
    def act(raw, mean, var, count, eps, clip, w0, b0, w1, b1, w2, b2, std, half_precision, log_normalizer, noise):
        # Chan et al.'s merge of one row into (mean, var, count), as RunningMeanStd.update
        previous = count[0]
        total = previous + 1.0
        for i in range(raw.shape[0]):
            delta = raw[i] - mean[i]
            m2 = var[i] * previous + delta * delta * (previous / total)
            mean[i] += delta / total
            var[i] = m2 / total
        count[0] = total
        x = np.empty(raw.shape[0], np.float32)
        for i in range(raw.shape[0]):
            value = (np.float32(raw[i]) - np.float32(mean[i])) / np.float32(np.sqrt(var[i] + eps))
            x[i] = min(max(value, -clip), clip)
        hidden = np.tanh(x @ w0 + b0)
        hidden = np.tanh(hidden @ w1 + b1)
        out = hidden @ w2 + b2  # the actor's means, then V
        n_actions = out.shape[0] - 1
        action = np.empty(n_actions, np.float32)
        squared = np.float32(0.0)
        for j in range(n_actions):
            action[j] = out[j] + std[j] * noise[j]
            deviation = action[j] - out[j]
            squared += deviation * deviation * half_precision[j]
        return action, -squared - log_normalizer, out[n_actions]

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    try:
        compiled = compiled_act_function()
    except ImportError:
        raise SystemExit("benchmarks/compiled_act.py needs numba (pip install numba); pgrad does not") from None
    torch.set_num_threads(1)
    import pgrad
    from pgrad.numpy_twin.layers import Dense
    from pgrad.numpy_twin.policy import NumpyActorCritic

    # the PPO paper's network, with the observation normaliser pgrad's MuJoCo presets turn on
    agent = pgrad.PPO("HalfCheetah-v5", seed=0, **{**PGRAD_KWARGS["ppo"], "normalize_obs": True})
    twin = NumpyActorCritic(agent.policy, fused=True)
    dense = [layer for layer in twin.fused if isinstance(layer, Dense)]
    if len(dense) != 3:
        raise SystemExit("expected a fused network of three dense layers")
    weights = [array for layer in dense for array in (np.ascontiguousarray(layer.weight_t), layer.bias_row)]
    gaussian = twin.gaussian
    std, half_precision = gaussian.std.ravel(), gaussian.half_precision.ravel()
    log_normalizer = np.float32(gaussian.log_normalizer)
    noise_tensor = torch.empty(len(std))
    noise = noise_tensor.numpy()
    raw = np.random.default_rng(0).normal(size=agent.policy.obs_size).astype(np.float32)  # as the twin reads it

    # agreement, from the same statistics and noise
    mean, var, count = twin.stats_mean.copy(), twin.stats_var.copy(), twin.stats.count.numpy().reshape(1).copy()
    torch.manual_seed(1)
    action, log_prob, value = twin.act(twin.normalize(raw[None], update=True))
    torch.manual_seed(1)
    noise_tensor.normal_()
    c_action, c_log_prob, c_value = compiled(
        raw, mean, var, count, twin.eps, twin.clip, *weights, std, half_precision, log_normalizer, noise
    )
    np.testing.assert_allclose(mean, twin.stats_mean, rtol=1e-12)
    np.testing.assert_allclose(var, twin.stats_var, rtol=1e-12)
    np.testing.assert_allclose(c_action, action[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_log_prob, log_prob[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_value, value[0], rtol=1e-5, atol=1e-6)

    def twin_call():
        return twin.act(twin.normalize(raw[None], update=True))

    def compiled_call():
        noise_tensor.normal_()  # the twin draws its noise the same way, inside act
        return compiled(
            raw, mean, var, count, twin.eps, twin.clip, *weights, std, half_precision, log_normalizer, noise
        )

    times: dict[str, list[float]] = {"twin": [], "compiled": []}
    for _ in range(args.repeats):
        for name, call in (("twin", twin_call), ("compiled", compiled_call)):
            start = time.perf_counter()
            for _ in range(args.calls):
                call()
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    twin_us, compiled_us = statistics.median(times["twin"]), statistics.median(times["compiled"])
    print("agreement: statistics, action, log-probability and value equal to float rounding")
    print(f"numpy twin normalize + act: {twin_us:.2f} us per call")
    print(f"numba-compiled, the same maths: {compiled_us:.2f} us per call")
    print(f"saved per env step: {twin_us - compiled_us:.2f} us ({twin_us / compiled_us:.2f}x)")
    agent.close()


if __name__ == "__main__":
    main()
