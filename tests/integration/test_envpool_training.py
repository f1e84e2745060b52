"""vectorization=envpool end to end: PPO trains, saves and loads; resume starts new episodes and
says so; what the backend refuses exits with status 2 on the command line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import pgrad
from pgrad.checkpointing import ResumeNotExactWarning
from pgrad.cli import main

pytest.importorskip("envpool")
torch.set_num_threads(1)

SMALL = ["--set", "n_envs=4", "--set", "n_steps=128", "--set", "batch_size=128", "--set", "n_epochs=2"]


def test_ppo_trains_saves_and_loads_with_envpool(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "ppo", "CartPole-v1", "--steps", "4096", "--out", str(run), "--quiet", "--eval-episodes", "2"]
    assert main([*argv, "--set", "vectorization=envpool", *SMALL]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["vectorization"] == "envpool"
    episodes = (run / "episodes.csv").read_text().splitlines()
    assert len(episodes) > 20  # a header and the CartPole episodes of 4096 steps
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] >= 4096 and summary["eval_episodes"] == 2  # evaluated on Gymnasium envs
    capsys.readouterr()

    agent = pgrad.load(run)
    action = agent.predict(np.zeros(4, np.float32), deterministic=True)
    assert int(action) in (0, 1)
    assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2


def _agent() -> pgrad.PPO:
    return pgrad.PPO(
        "CartPole-v1", seed=2, preset=None, vectorization="envpool", n_envs=2, n_steps=64, batch_size=64, n_epochs=1
    )


def _resume(tmp_path) -> tuple[pgrad.PPO, list[str]]:
    resumed = _agent()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.load_checkpoint_state(tmp_path / "part" / "checkpoint", run_dir=tmp_path / "part")
    return resumed, [str(w.message) for w in caught if issubclass(w.category, ResumeNotExactWarning)]


def test_resume_restores_the_learner_and_starts_new_episodes(tmp_path):
    part = _agent()
    part.learn(1024, run_dir=tmp_path / "part", quiet=True, callback=lambda agent, row: agent.updates < 4)
    saved_steps, saved_weights = part.total_steps, {k: v.clone() for k, v in part.policy.state_dict().items()}
    saved_obs = part.collector.obs.copy()
    assert part.collector.episode_length.any()  # episodes were running at the checkpoint
    part.close()

    resumed, messages = _resume(tmp_path)
    assert len(messages) == 1 and "vectorization=envpool" in messages[0] and "new episodes" in messages[0]
    assert resumed.total_steps == saved_steps
    assert all(torch.equal(saved_weights[k], v) for k, v in resumed.policy.state_dict().items())
    collector = resumed.collector
    assert not collector.episode_length.any() and not collector.pending_reset.any()
    # the collector acts on the new episodes' first observations, not on the dropped episodes' last ones,
    # and the same checkpoint resumes to the same new episodes
    assert not np.array_equal(collector.obs, saved_obs)
    again, _ = _resume(tmp_path)
    assert np.array_equal(again.collector.obs, collector.obs)
    again.close()
    resumed.learn(1024, run_dir=tmp_path / "part", quiet=True, resume=True)
    assert resumed.total_steps >= 1024
    resumed.close()


def test_seed_batching_and_wrappers_are_refused_on_the_command_line(tmp_path, capsys):
    base = ["train", "ppo", "CartPole-v1", "--steps", "256", "--set", "vectorization=envpool", *SMALL]
    assert main([*base, "--out", str(tmp_path / "a"), "--wrapper", "gymnasium.wrappers:ClipReward"]) == 2
    assert "cannot apply wrappers" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--seeds", "0", "1", "--batched"]) == 2
    assert "vectorization must be sync" in capsys.readouterr().err
