"""The ``device`` setting (pgrad/devices.py): updates on a GPU, acting on the CPU.

Everything here runs on a CPU-only machine except the CUDA cases, which need a GPU and are
skipped, saying so, where torch sees none.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos import ALGORITHMS
from pgrad.devices import cuda_problem, resolve_device
from pgrad.envs.spaces_demo import FindTheLightEnv
from pgrad.errors import ConfigError

NO_GPU = cuda_problem()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"no CUDA device here: {NO_GPU}")
needs_no_gpu = pytest.mark.skipif(NO_GPU is None, reason="a CUDA device is present: the no-GPU error cannot happen")


def image_env():
    return FindTheLightEnv(size=6)


def test_auto_resolves_to_the_cpu_without_an_image_encoder_or_a_gpu():
    assert resolve_device("auto", has_image_encoder=False, algo="ppo", updates_on_device=True).type == "cpu"
    assert resolve_device("auto", has_image_encoder=True, algo="a2c", updates_on_device=False).type == "cpu"
    expected = "cpu" if NO_GPU else "cuda"
    assert resolve_device("auto", has_image_encoder=True, algo="ppo", updates_on_device=True).type == expected


def test_cpu_learner_is_the_policy_itself():
    agent = pgrad.PPO("CartPole-v1", device="cpu", preset="none")
    try:
        assert agent.learner is agent.policy and agent.device.type == "cpu"
        assert agent.describe_run()["config"]["device"] == "cpu"
    finally:
        agent.close()


@pytest.mark.parametrize("algo", ["actor-critic", "reinforce", "ppo-lstm"])
def test_algorithms_that_update_on_the_cpu_refuse_cuda(algo):
    with pytest.raises(ConfigError, match="updates on the CPU only"):
        ALGORITHMS[algo]("CartPole-v1", device="cuda", preset="none")


@needs_no_gpu
def test_cuda_without_a_gpu_is_exit_2_with_what_torch_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pgrad.cli", "train", "ppo", "CartPole-v1", "--steps", "64", "--set", "device=cuda"]
        + ["--out", str(tmp_path / "run"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "device=cuda" in lines[0] and NO_GPU in lines[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()


@needs_gpu
@pytest.mark.parametrize("algo_class", [pgrad.PPO, pgrad.A2C])
def test_cuda_updates_match_the_cpu_and_save_like_it(tmp_path, algo_class):
    """The same run on cpu and cuda: the same first actions and weights close after a few
    updates (GPU kernels round differently), files saved from the CPU copy and loadable."""
    settings = dict(seed=3, preset="none", n_steps=32, n_envs=2, batch_size=32, n_epochs=2)
    if algo_class is pgrad.A2C:
        settings = dict(seed=3, preset="none", n_steps=8, n_envs=2)
    runs = {}
    for device in ("cpu", "cuda"):
        agent = algo_class(image_env, device=device, **settings)
        agent.learn(256, run_dir=tmp_path / device, quiet=True)
        assert agent.learner.critic[0].weight.device.type == device
        assert next(agent.policy.parameters()).device.type == "cpu"  # acting stays on the CPU
        agent.save(tmp_path / device)
        runs[device] = agent
    cpu, cuda = runs["cpu"].policy.state_dict(), runs["cuda"].policy.state_dict()
    for name in cpu:
        assert torch.allclose(cpu[name], cuda[name], atol=1e-3), name
    loaded = pgrad.load(tmp_path / "cuda")
    obs = np.stack([image_env().reset(seed=s)[0] for s in range(4)])
    assert np.array_equal(loaded.predict(obs), runs["cuda"].predict(obs))
    assert json.loads((tmp_path / "cuda" / "config.json").read_text())["config"]["device"] == "cuda"
    resumed = algo_class(image_env, device="cuda", **settings)
    resumed.load_checkpoint_state(tmp_path / "cuda" / "checkpoint")
    resumed.learn(64, quiet=True)
    for agent in (*runs.values(), resumed):
        agent.close()


def test_seed_batching_refuses_a_gpu_learner():
    from pgrad.algos.ppo_batched import SeedBatchedPPO

    if NO_GPU is not None:  # device=cuda fails first, in each seed's agent, with the no-GPU reason
        with pytest.raises(ConfigError, match="device=cuda"):
            SeedBatchedPPO("CartPole-v1", seeds=[0, 1], device="cuda", preset="none")
    else:
        with pytest.raises(ConfigError, match="device must be cpu"):
            SeedBatchedPPO("CartPole-v1", seeds=[0, 1], device="cuda", preset="none")
