"""``--backend ray``: multi-seed training and tuning as Ray tasks (a local 2-CPU Ray instance)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pgrad.cli import main

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

TINY = [
    "--steps",
    "512",
    "--quiet",
    "--eval-episodes",
    "2",
    "--preset",
    "none",
    "--set",
    "n_envs=2",
    "--set",
    "n_steps=64",
    "--set",
    "batch_size=32",
    "--set",
    "n_epochs=1",
]


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _train_on_both_backends(tmp_path, seeds: list[str], *mode: str) -> None:
    """The same multi-seed run into ``tmp_path/local`` and ``tmp_path/ray``; each seed's policy
    must be the same on both."""
    for backend in ("local", "ray"):
        argv = ["train", "ppo", "CartPole-v1", "--seeds", *seeds, *TINY, "--out", str(tmp_path / backend)]
        assert main([*argv, "--backend", backend, *mode]) == 0
    for seed in seeds:
        local = load_file(tmp_path / "local" / f"seed_{seed}" / "policy.safetensors")
        remote = load_file(tmp_path / "ray" / f"seed_{seed}" / "policy.safetensors")
        assert all(torch.equal(local[k], remote[k]) for k in local)


def test_seeds_on_ray_equal_seeds_in_local_processes(ray_instance, tmp_path):
    # --no-batched: one process per seed, each exactly a Ray task's computation (seed batching
    # rounds differently, tests/integration/test_ppo_batched.py)
    _train_on_both_backends(tmp_path, ["0", "1"], "--no-batched")
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["completed_seeds"] == [0, 1]
    local_summary = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert summary["eval_mean_return"] == local_summary["eval_mean_return"]


def test_seed_batched_groups_on_ray_equal_local_groups(ray_instance, tmp_path):
    # --batched --backend ray: each seed group is a Ray task, computing what a local group computes
    _train_on_both_backends(tmp_path, ["0", "1", "2"], "--batched", "--workers", "2")
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["completed_seeds"] == [0, 1, 2] and summary.get("batched_groups") == [[0, 1], [2]]


def test_tune_on_ray(ray_instance, tmp_path):
    import optuna

    out = tmp_path / "study"
    assert (
        main(
            [
                "tune",
                "a2c",
                "CartPole-v1",
                "--trials",
                "2",
                "--steps",
                "400",
                "--evaluations",
                "2",
                "--eval-episodes",
                "1",
                "--preset",
                "none",
                "--backend",
                "ray",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="a2c-CartPole-v1", storage=f"sqlite:///{(out / 'study.db').resolve()}")
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.intermediate_values for t in trials)  # reports went through the pruning actor
    assert (out / "best_preset.toml").is_file() and (out / "trial_0" / "metrics.csv").is_file()
