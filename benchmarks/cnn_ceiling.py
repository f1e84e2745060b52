"""How much faster than SB3 image PPO can be on one core: the arithmetic of the shared CNN.

    .venv/bin/python benchmarks/cnn_ceiling.py                  # MinAtar/Breakout-v1, ~1 min
    .venv/bin/python benchmarks/cnn_ceiling.py --repeats 9 --sb3-steps 8192

``benchmarks/speed.py --goals`` compares pgrad's PPO with SB3's on MinAtar Breakout with the same
network and settings (benchmarks/image_sb3.py: pgrad's small CNN, 8 envs x 128 steps, 4 epochs
of minibatches of 256, one torch thread each). Both sides then run the same torch convolutions
on the same numbers. This script asks how far apart they can get at all, in one process and one
torch thread:

* ``matmul``: the CPU's float32 rate on a large matrix product (``torch.matmul`` of two
  1024x1024 matrices), the fastest this core does arithmetic through torch;
* ``update``: one minibatch's forward and backward pass through pgrad's PPO policy for this env
  (its CNN, actor and critic heads; a PPO-shaped loss), in ms and in GFLOP/s, the FLOPs counted
  from the layer shapes (a multiply-add is 2 FLOPs; the backward pass computes the weight
  gradients of every layer and the input gradients of all but the first);
* ``rollout``: the policy's forward pass on one step's ``n_envs`` observations (``policy.act``);
* ``env``: one raw env step (``make_env``, random actions);
* the same minibatch with the variants tried to make torch's convolutions cheaper: channels-last
  memory format, oneDNN (mkldnn) off, denormals flushed;
* optionally (``--sb3-steps``), SB3's whole ``learn`` on this env and settings in a fresh process
  (image_sb3.py's own run), for its time per env step.

It prints, per env step: the update's share of the arithmetic (minibatches x epochs / rollout
length), the rollout's and the env's, timed as torch runs them and at the matmul rate; and the
ratio SB3 / pgrad could reach if pgrad's whole step cost only that arithmetic at the matmul rate
plus the env, which no implementation on this core beats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_sb3 import SETTINGS, network  # noqa: E402  (the comparison's settings, spelled once)


def median_ms(function, calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean wall time of ``function()`` over ``calls`` calls, in ms."""
    function()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        rounds.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(rounds)


def macs_per_sample(module, sample_shape) -> tuple[int, int]:
    """``(forward MACs, backward MACs)`` per sample of the Conv2d and Linear layers in ``module``,
    counted from the shapes their forward pass sees (hooks on one sample)."""
    import torch
    from torch import nn

    forward: list[int] = []  # MACs of each layer, in order

    def hook(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            kernel = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            forward.append(output[0].numel() * kernel)
        elif isinstance(layer, nn.Linear):
            forward.append(layer.in_features * layer.out_features)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(torch.zeros(1, *sample_shape))
    for handle in handles:
        handle.remove()
    first_input_grad = forward[0]  # the first layer's input is the observation: no gradient
    return sum(forward), 2 * sum(forward) - first_input_grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sb3-steps", type=int, default=4096, help="0: skip SB3's run")
    args = parser.parse_args()

    import numpy as np
    import torch

    import pgrad
    from pgrad.envs import make_env

    torch.set_num_threads(1)
    torch.manual_seed(0)
    agent = pgrad.PPO(
        args.env, seed=0, preset="none", hidden_sizes=(), normalize_obs=False, **SETTINGS, **network(args.env)
    )
    policy = agent.policy
    batch, n_envs = SETTINGS["batch_size"], SETTINGS["n_envs"]

    # real observations: one rollout's worth, random actions
    env = make_env(args.env)
    rng = np.random.default_rng(0)
    observations, obs = [], env.reset(seed=0)[0]
    for _ in range(batch):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs = env.reset()[0]
    flat = policy.normalize(policy.obs_to_tensor(np.stack(observations)))
    actions = torch.from_numpy(rng.integers(0, env.action_space.n, batch))

    def minibatch_step() -> None:
        policy.zero_grad(set_to_none=True)
        # a new tensor object each call: the policy reuses the features of the same object while
        # its weights are unchanged (ActorCriticPolicy.encode), and nothing steps them here
        obs = flat.view(flat.shape)
        dist = policy.distribution(obs)
        loss = -dist.log_prob(actions).mean() + 0.5 * policy.value(obs).pow(2).mean() - 0.01 * dist.entropy().mean()
        loss.backward()

    rollout_obs = flat[:n_envs]
    encoder = policy.encoder
    image = encoder.images[0]
    forward_macs, backward_macs = macs_per_sample(encoder.cnns[0], image.image_shape)
    heads = (policy.actor_body, policy.head, policy.critic)  # dense layers after the CNN: a MAC per weight
    head_macs = sum(m.weight.numel() for part in heads for m in part.modules() if isinstance(m, torch.nn.Linear))
    forward_macs += head_macs
    backward_macs += 2 * head_macs
    update_gflop = 2 * (forward_macs + backward_macs) * batch / 1e9

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    parts = {
        "matmul 1024": median_ms(lambda: a @ b, 5, args.repeats),
        "update minibatch": median_ms(minibatch_step, 5, args.repeats),
        "rollout forward": median_ms(lambda: policy.act(rollout_obs), 50, args.repeats),
    }
    env.reset(seed=1)

    def env_step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    parts["env step"] = median_ms(env_step, 500, args.repeats)

    variants = {}
    try:
        policy.to(memory_format=torch.channels_last)
        variants["channels_last"] = median_ms(minibatch_step, 5, args.repeats)
    finally:
        policy.to(memory_format=torch.contiguous_format)
    torch.backends.mkldnn.enabled = False
    variants["oneDNN off"] = median_ms(minibatch_step, 5, args.repeats)
    torch.backends.mkldnn.enabled = True
    torch.set_flush_denormal(True)
    variants["denormals flushed"] = median_ms(minibatch_step, 5, args.repeats)
    torch.set_flush_denormal(False)
    variants["default (again)"] = median_ms(minibatch_step, 5, args.repeats)
    agent.close()

    peak = 2 * 1024**3 / (parts["matmul 1024"] / 1e3) / 1e9  # GFLOP/s
    torch_rate = update_gflop / (parts["update minibatch"] / 1e3)
    rollout_length = SETTINGS["n_envs"] * SETTINGS["n_steps"]
    minibatches_per_step = SETTINGS["n_epochs"] * (rollout_length // batch) / rollout_length
    rollout_gflop = 2 * forward_macs * n_envs / 1e9
    per_step = {  # us per env step
        "update, as torch runs it": parts["update minibatch"] * 1e3 * minibatches_per_step,
        "update at the matmul rate": update_gflop / peak * 1e6 * minibatches_per_step,
        "rollout forward, as torch runs it": parts["rollout forward"] * 1e3 / n_envs,
        "rollout forward at the matmul rate": rollout_gflop / peak * 1e6 / n_envs,
        "env step": parts["env step"] * 1e3,
    }
    floor = (
        per_step["update at the matmul rate"] + per_step["rollout forward at the matmul rate"] + per_step["env step"]
    )
    print(f"{args.env}, image_sb3.py's settings, one torch thread, medians of {args.repeats}")
    print(f"matmul 1024x1024: {parts['matmul 1024']:.2f} ms, {peak:.1f} GFLOP/s")
    print(
        f"update minibatch of {batch}: {parts['update minibatch']:.2f} ms, {update_gflop:.3f} GFLOP, "
        f"{torch_rate:.1f} GFLOP/s ({torch_rate / peak:.0%} of the matmul rate)"
    )
    print(f"rollout forward of {n_envs}: {parts['rollout forward']:.3f} ms; env step {parts['env step'] * 1e3:.1f} us")
    print("the same minibatch, variants: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in variants.items()))
    print("\n| per env step | us |\n|---|---|")
    for name, value in per_step.items():
        print(f"| {name} | {value:.1f} |")
    print(f"| floor: update and rollout at the matmul rate, plus the env | {floor:.1f} |")
    if args.sb3_steps:
        script = str(Path(__file__).resolve().parent / "image_sb3.py")
        command = [sys.executable, script, args.env, "--steps", str(args.sb3_steps), "--one", "sb3", "0"]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        sb3_us = 1e6 / json.loads(out)["steps_per_second"]
        print(f"| SB3 whole learn({args.sb3_steps}), fresh process | {sb3_us:.1f} |")
        print(f"\nSB3 / floor: {sb3_us / floor:.2f} (the most any implementation of this network gains over SB3 here)")


if __name__ == "__main__":
    main()
