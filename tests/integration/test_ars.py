"""ARS end to end: run folder, same results on every backend, save/load, eval, worker failure, bad input."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch

import pgrad
from pgrad.cli import main
from pgrad.envs.cartpole import ContinuousCartPoleEnv
from pgrad.errors import ConfigError, TrainingError, UnsupportedSpaceError
from pgrad.experiments.runner import TrainSpec, run_training

CARTPOLE = "pgrad/ContinuousCartPole-v0"
TINY = dict(n_directions=4, n_top=2, lr=0.1, noise_std=0.3, eval_every=2, eval_episodes=2)


def _metrics_without_time(agent):
    return [{k: v for k, v in row.items() if k not in ("wall_time", "sps")} for row in agent.logger.metrics]


def _train(n_workers, backend="local", env=CARTPOLE, steps=3_000, seed=1, **overrides):
    agent = pgrad.ARS(env, seed=seed, preset="none", n_workers=n_workers, backend=backend, **{**TINY, **overrides})
    agent.learn(steps, quiet=True)
    result = (
        json.dumps(_metrics_without_time(agent)),
        agent.policy.flat_parameters(),
        json.dumps(agent.logger.episodes),
    )
    agent.close()
    return result


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        (CARTPOLE, {}),
        ("Pendulum-v1", {}),
        ("Pendulum-v1", {"policy_type": "mlp", "hidden_sizes": "8,8"}),
        ("Pendulum-v1", {"normalize_obs": False, "n_top": None, "alive_bonus_shift": 1.0}),
    ],
)
def test_smoke_writes_the_run_folder(env_id, overrides, tmp_path):
    agent = pgrad.ARS(env_id, seed=0, preset="none", n_workers=0, **{**TINY, **overrides})
    agent.learn(2_000, run_dir=tmp_path, quiet=True)
    assert agent.total_steps >= 2_000
    # every step counted is a step of a perturbed rollout: 2 per direction, whole episodes
    assert sum(e["length"] for e in agent.logger.episodes) == agent.total_steps
    assert len(agent.logger.episodes) == 2 * TINY["n_directions"] * agent.updates
    row = agent.logger.metrics[-1]
    for key in ("reward_std", "step_norm", "rollout_return_mean", "eval_return_mean"):
        assert np.isfinite(row[key]), key
    assert agent.action_space.contains(agent.predict(agent.observation_space.sample()))
    agent.save(tmp_path)
    for name in ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoint" / "state.safetensors").is_file()
    agent.close()


def test_worker_processes_give_the_in_process_results():
    """Tasks depend only on (weights, direction index): any worker count, same run."""
    _compare(_train(2), _train(0))


def _compare(a, b):
    assert a[0] == b[0] and a[2] == b[2]
    np.testing.assert_array_equal(a[1], b[1])
    return True


def test_same_seed_same_numbers_other_seed_other_numbers():
    a, b = _train(0, seed=2), _train(0, seed=2)
    _compare(a, b)
    assert _train(0, seed=3)[0] != a[0]


@pytest.mark.ray
def test_ray_backend_gives_the_local_results():
    ray = pytest.importorskip("ray")
    local = _train(2, steps=1_500)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _compare(_train(2, backend="ray", steps=1_500), local)
    finally:
        ray.shutdown()


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    agent = pgrad.ARS(CARTPOLE, preset="none", backend="ray", **TINY)
    with pytest.raises(ConfigError, match=r"needs Ray: pip install 'pgrad\[ray\]'"):
        agent.learn(100, quiet=True)
    agent.close()


def test_save_load_round_trip_and_eval(tmp_path, capsys):
    agent = pgrad.ARS("Pendulum-v1", seed=0, preset="none", n_workers=0, **TINY)
    agent.learn(2_000, quiet=True)
    agent.save(tmp_path)
    loaded = pgrad.load(tmp_path)
    assert type(loaded) is pgrad.ARS and loaded.config == agent.config
    observations = np.random.default_rng(0).normal(size=(50, 3)) * 3
    np.testing.assert_array_equal(agent.predict(observations), loaded.predict(observations))
    np.testing.assert_array_equal(agent.predict(observations[0]), loaded.predict(observations[0]))
    stats = agent.policy.obs_normalizer.stats
    assert stats.count.item() > 1000  # statistics were learned ...
    assert torch.equal(stats.mean, loaded.policy.obs_normalizer.stats.mean)  # ... and saved
    before = stats.mean.clone()
    result = pgrad.evaluate(loaded, episodes=2)
    assert torch.equal(loaded.policy.obs_normalizer.stats.mean, before)  # frozen in evaluation
    assert main(["eval", str(tmp_path), "--episodes", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mean_return"] == pytest.approx(result["mean_return"])
    agent.close()


@pytest.mark.parametrize("overrides", [{}, {"policy_type": "mlp", "hidden_sizes": "8,8", "activation": "relu"}])
def test_onnx_export_matches_predict(overrides, tmp_path):
    pytest.importorskip("onnxruntime")
    from pgrad.export import export_onnx, run_onnx

    agent = pgrad.ARS("Pendulum-v1", seed=0, preset="none", n_workers=0, **{**TINY, **overrides})
    agent.learn(2_000, quiet=True)
    path = export_onnx(agent, tmp_path / "policy.onnx")
    observations = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, observations), agent.predict(observations), atol=1e-5)
    agent.close()


def test_checkpoint_resume_continues_the_same_run(tmp_path):
    straight = pgrad.ARS(CARTPOLE, seed=5, preset="none", n_workers=0, **TINY)
    straight.learn(2_000, quiet=True)
    straight.save_checkpoint(tmp_path / "checkpoint")
    straight.learn(2_000, quiet=True)
    resumed = pgrad.ARS(CARTPOLE, seed=5, preset="none", n_workers=0, **TINY)
    resumed.load_checkpoint_state(tmp_path / "checkpoint")
    resumed.learn(2_000, quiet=True)
    np.testing.assert_array_equal(straight.policy.flat_parameters(), resumed.policy.flat_parameters())
    assert straight.total_steps == resumed.total_steps
    straight.close()
    resumed.close()


def test_discrete_actions_are_rejected_naming_what_is_supported():
    with pytest.raises(
        UnsupportedSpaceError, match=r"ARS does not support the action space Discrete\(2\); supported: Box"
    ):
        pgrad.ARS("CartPole-v1", preset="none")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_top": 9, "n_directions": 8}, "n_top=9 must be at most n_directions=8"),
        ({"n_envs": 2}, "unknown hyperparameter 'n_envs'"),  # ARS runs one env per worker: n_workers
        ({"normalize_reward": True}, "unknown hyperparameter 'normalize_reward'"),
        ({"backend": "slurm"}, "backend='slurm' is out of range"),
        ({"policy_type": "rnn"}, "policy_type='rnn' is out of range"),
        ({"noise_std": 0}, "noise_std=0.0 is out of range"),
        ({"n_workers": -1}, "n_workers=-1 is out of range"),
    ],
)
def test_bad_hyperparameters_fail_before_work(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pgrad.ARS(CARTPOLE, preset="none", **overrides)


def test_env_instance_needs_in_process_rollouts():
    agent = pgrad.ARS(ContinuousCartPoleEnv(), preset="none", n_workers=2, **TINY)
    with pytest.raises(ConfigError, match="cannot be sent to worker processes"):
        agent.learn(100, quiet=True)
    agent.close()


class SlowCartPole(ContinuousCartPoleEnv):
    """ContinuousCartPole taking ~2 ms per step, so an iteration lasts long enough to kill a worker in."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.spec = None

    def step(self, action):
        time.sleep(0.002)
        return super().step(action)


def _kill_worker_when_running(agent, index, killed):
    deadline = time.time() + 60
    while time.time() < deadline:
        pool = getattr(agent, "pool", None)
        if pool is not None and agent.updates >= 1:
            time.sleep(0.2)  # well inside the next iteration
            os.kill(pool.worker_pids()[index], signal.SIGKILL)
            killed.append(pool.worker_pids()[index])
            return
        time.sleep(0.01)


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_killed_worker_fails_the_run_and_keeps_the_checkpoint(tmp_path, backend):
    """kill -9 of a rollout worker (a process of the pool, or a Ray actor): one line naming it,
    within a bounded time, the checkpoint intact. The lost rollouts are not retried: an ARS
    iteration's result depends on every direction, so the run fails and is resumed instead."""
    if backend == "ray":
        ray = pytest.importorskip("ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out = tmp_path / "run"
    spec = TrainSpec(
        algo="ars",
        env="tests.integration.test_ars:SlowCartPole",
        seed=0,
        out=str(out),
        steps=10**6,
        preset="none",
        overrides={
            "n_workers": 2, "n_directions": 4, "lr": 0.1, "noise_std": 0.3, "eval_every": 0, "backend": backend,
        },
        quiet=True,
    )  # fmt: skip
    agent = pgrad.ARS(spec.env, seed=0, preset="none", **spec.overrides)
    killed = []
    killer = threading.Thread(target=_kill_worker_when_running, args=(agent, 1, killed), daemon=True)
    killer.start()
    start = time.time()
    try:
        with pytest.raises(TrainingError) as failure:
            run_training(spec, agent)
    finally:
        if backend == "ray":
            ray.shutdown()
    killer.join()
    assert killed, "the worker was never killed"
    message = str(failure.value)
    if backend == "local":
        assert f"worker 1 (pid {killed[0]}) was killed by signal SIGKILL" in message
    else:
        assert "Ray worker 1 died" in message and "\n" not in message, message
    assert "last good checkpoint kept" in message
    assert time.time() - start < 60  # it failed, it did not hang
    restored = pgrad.ARS(CARTPOLE, seed=0, preset="none", **spec.overrides)
    restored.load_checkpoint_state(out / "checkpoint")  # the checkpoint written before training is intact
    restored.close()


def test_cli_train_and_eval(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "ars",
        CARTPOLE,
        "--steps",
        "2000",
        "--out",
        str(run),
        "--quiet",
        "--eval-episodes",
        "2",
        "--workers",
        "1",
        "--set",
        "n_directions=4",
    ]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "ars" and config["preset"] == CARTPOLE
    assert config["config"]["n_workers"] == 1 and config["config"]["backend"] == "local"
    assert type(pgrad.load(run)) is pgrad.ARS
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    assert main(["train", "ars", "CartPole-v1", "--steps", "100"]) == 2
    assert "supported: Box" in capsys.readouterr().err


def _rollout_workers_by_default(spec: object) -> dict:
    """Pool work for the test below: how many rollout workers an ARS seed would start by default."""
    from pgrad.parallel import default_workers

    return {"ok": True, "workers": default_workers()}


def test_seeds_trained_side_by_side_share_the_cores():
    # An ARS seed with default n_workers starts one rollout worker per core; a multi-seed pool
    # that runs k seeds at once must give each a k-th of the cores, not all of them.
    from pgrad.experiments.runner import _outcomes_local
    from pgrad.parallel import available_cores

    cores = available_cores()
    side_by_side = dict(_outcomes_local({0: None, 1: None}, 2, work=_rollout_workers_by_default))
    assert [side_by_side[k]["workers"] for k in (0, 1)] == [max(1, cores // 2)] * 2
    alone = dict(_outcomes_local({0: None}, 1, work=_rollout_workers_by_default))
    assert alone[0]["workers"] == cores


def test_a_policy_saved_with_the_retired_on_policy_fields_still_loads(tmp_path):
    # ARS configs once carried the on-policy fields (n_envs, gamma, ...) it never used; files
    # written then must still load, while setting those fields now is an error (above)
    agent = pgrad.ARS(CARTPOLE, preset="none", n_workers=0)
    agent.save(tmp_path)
    description = json.loads((tmp_path / "policy.json").read_text())
    description["config"].update({"n_envs": 1, "gamma": 0.99, "normalize_reward": False, "vectorization": "sync"})
    (tmp_path / "policy.json").write_text(json.dumps(description))
    loaded = pgrad.load(tmp_path)
    assert loaded.config == agent.config
