"""The everyday workflow around one agent: callbacks, env options, fine-tuning (``--init``)."""

import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import pgrad
from pgrad.callbacks import Callback, CheckpointCallback, EvalCallback, StopOnNoImprovement, StopOnReward
from pgrad.envs.options import ConfiguredEnv, WrapperSpec, parse_env_kwargs, parse_wrappers
from pgrad.errors import ConfigError

SMALL_PPO = dict(preset="none", n_steps=64, batch_size=64, n_epochs=1)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, cwd=cwd)


class Recorder(Callback):
    """Every hook call, in order."""

    def __init__(self, stop_after_updates=None):
        self.calls, self.stop_after_updates = [], stop_after_updates

    def on_training_start(self, agent, run_dir):
        self.calls.append(("start", agent.total_steps))

    def on_rollout_end(self, agent):
        self.calls.append(("rollout", agent.total_steps))

    def on_update_end(self, agent, row):
        self.calls.append(("update", row["step"]))
        if self.stop_after_updates is not None and agent.updates >= self.stop_after_updates:
            return False
        return None

    def on_training_end(self, agent, run_dir):
        self.calls.append(("end", agent.total_steps))


# -- callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["ppo", "a2c", "actor-critic", "reinforce", "ppo-lstm"])
def test_hooks_run_in_order_and_false_stops(algo):
    from pgrad.algos import ALGORITHMS

    settings = {"ppo": SMALL_PPO, "ppo-lstm": SMALL_PPO}.get(algo, {"preset": "none"})
    agent = ALGORITHMS[algo]("CartPole-v1", **settings)
    recorder, bystander = Recorder(stop_after_updates=3), Recorder()
    agent.learn(100_000, quiet=True, callback=[recorder, bystander])
    kinds = [kind for kind, _ in recorder.calls]
    assert kinds == ["start"] + ["rollout", "update"] * 3 + ["end"]
    assert bystander.calls == recorder.calls  # every callback sees every hook, the stop comes after
    assert agent.updates == 3
    agent.close()


def test_a_plain_function_still_works_and_mixes_with_objects():
    agent = pgrad.PPO("CartPole-v1", **SMALL_PPO)
    rows = []
    recorder = Recorder()
    agent.learn(256, quiet=True, callback=[lambda a, row: rows.append(row["step"]), recorder])
    assert rows == [64, 128, 192, 256] and len(recorder.calls) == 10
    rows.clear()
    agent.learn(256, quiet=True, callback=lambda a, row: rows.append(row["step"]) or False)  # the old form
    assert rows == [320]
    agent.close()


def test_stop_on_reward_training_and_evaluation_sources(tmp_path):
    agent = pgrad.PPO("CartPole-v1", seed=0)  # the preset learns CartPole in ~50k steps
    stop = StopOnReward(100.0)
    agent.learn(200_000, quiet=True, callback=[stop])
    assert stop.stopped_at is not None and agent.total_steps < 200_000
    assert agent.logger.recent_return >= 100.0
    evaluation = EvalCallback(eval_every=2048, episodes=3)
    stop = StopOnReward(150.0, source="evaluation")
    agent.learn(200_000, run_dir=tmp_path, quiet=True, callback=[evaluation, stop])
    assert stop.stopped_at is not None
    assert evaluation.stopping.history[-1]["mean_return"] >= 150.0
    assert (tmp_path / "best" / "policy.json").is_file() and (tmp_path / "evaluations.csv").is_file()
    agent.close()


def test_stop_on_no_improvement():
    agent = pgrad.PPO("CartPole-v1", **SMALL_PPO)
    plateau = StopOnNoImprovement(eval_every=64, patience=1, min_delta=1e9)  # no evaluation can improve enough
    agent.learn(10_000, quiet=True, callback=[plateau])
    assert agent.total_steps == 128  # the first evaluation sets the best, the second does not beat it by 1e9
    assert plateau.stopping.should_stop
    agent.close()


def test_checkpoint_callback_writes_at_each_multiple(tmp_path):
    agent = pgrad.PPO("CartPole-v1", **SMALL_PPO)
    seen = []

    class SeeCheckpoints(Callback):  # runs before the loop writes this update's checkpoint
        def on_update_end(self, agent, row):
            state = tmp_path / "checkpoint" / "state.json"
            if state.is_file():
                seen.append(json.loads(state.read_text())["total_steps"])

    agent.learn(512, run_dir=tmp_path, quiet=True, callback=[CheckpointCallback(128), SeeCheckpoints()])
    assert sorted(set(seen)) == [128, 256, 384]
    agent.close()


def test_callback_arguments_are_checked():
    agent = pgrad.PPO("CartPole-v1", **SMALL_PPO)
    with pytest.raises(ConfigError, match="neither"):
        agent.learn(64, quiet=True, callback=[42])
    with pytest.raises(ConfigError, match="at most one EvalCallback"):
        agent.learn(64, quiet=True, callback=[EvalCallback(64), EvalCallback(128)])
    with pytest.raises(ConfigError, match="twice"):
        agent.learn(64, quiet=True, callback=[CheckpointCallback(64)], checkpoint_every=128)
    agent.close()


# -- env options -------------------------------------------------------------------------------


def test_env_kwarg_values_are_json_typed():
    assert parse_env_kwargs(["continuous=true", "gravity=-9.5", "size=[2, 3]", "mode=rgb_array"]) == {
        "continuous": True,
        "gravity": -9.5,
        "size": [2, 3],
        "mode": "rgb_array",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_env_kwargs(["no-equals-sign"])
    spec = WrapperSpec.parse('gymnasium.wrappers:ClipReward:{"min_reward": -1}')
    assert spec.target == "gymnasium.wrappers:ClipReward" and spec.kwargs == {"min_reward": -1}
    for bad in ("ClipReward", "gymnasium.wrappers:", 'gymnasium.wrappers:ClipReward:{"a": }'):
        with pytest.raises(ConfigError):
            WrapperSpec.parse(bad)


def test_env_kwargs_and_wrappers_reach_every_env_and_are_recorded(tmp_path):
    agent = pgrad.A2C(
        "LunarLander-v3",
        preset="none",
        n_envs=2,
        env_kwargs={"continuous": True},
        wrappers=['gymnasium.wrappers:ClipReward:{"min_reward": -0.5, "max_reward": 0.5}'],
    )
    assert isinstance(agent.action_space, gymnasium.spaces.Box)  # continuous=True reached the constructor
    assert all(isinstance(env.env, gymnasium.wrappers.ClipReward) for env in agent.envs.envs)  # inside the recorder
    agent.learn(200, run_dir=tmp_path, quiet=True)
    assert all(abs(r) <= 0.5 for r in agent.collector.collect(5)[0].rewards.reshape(-1).tolist())
    agent.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["env_kwargs"] == {"continuous": True}
    assert config["wrappers"] == [
        {"target": "gymnasium.wrappers:ClipReward", "kwargs": {"min_reward": -0.5, "max_reward": 0.5}}
    ]
    loaded = pgrad.load(tmp_path)  # acting only: the recorded env is built again, wrappers and all
    env = pgrad.envs.make_env(loaded.env)
    assert isinstance(env, gymnasium.wrappers.ClipReward) and isinstance(env.action_space, gymnasium.spaces.Box)
    agent.close()


def test_a_wrapper_from_a_run_file_is_imported_only_when_named_again(tmp_path):
    recorded = {"env": "CartPole-v1", "wrappers": [{"target": "json:JSONDecoder", "kwargs": {}}]}
    from pgrad.envs.options import recorded_env

    env = recorded_env(recorded, None, ())
    assert isinstance(env, ConfiguredEnv) and not env.wrappers[0].may_import()
    with pytest.raises(ConfigError, match="imports no module because a file names it"):
        pgrad.envs.make_env(env)
    named = recorded_env(recorded, None, parse_wrappers(["json:JSONDecoder"]))
    assert named.wrappers[0].may_import()
    gym_recorded = recorded_env(
        {"env": "CartPole-v1", "wrappers": [{"target": "gymnasium.wrappers:ClipReward"}]}, None, ()
    )
    assert gym_recorded.wrappers[0].may_import()  # Gymnasium's own


def test_env_options_on_the_command_line_reach_train_eval_and_resume(tmp_path):
    run = tmp_path / "run"
    options = ["--env-kwarg", "continuous=true", "--wrapper", "gymnasium.wrappers:TransformReward:{}"]
    bad = cli("train", "ppo", "LunarLander-v3", "--env-kwarg", "nonsense_keyword=1", "--steps", "64", "--quiet")
    assert bad.returncode == 2 and "nonsense_keyword" in bad.stderr
    bad = cli("train", "ppo", "LunarLander-v3", "--wrapper", "not a wrapper", "--steps", "64", "--quiet")
    assert bad.returncode == 2 and "module:Class" in bad.stderr
    # TransformReward needs its function: an error naming the wrapper, before training starts
    bad = cli("train", "ppo", "LunarLander-v3", *options, "--steps", "64", "--out", str(run), "--quiet")
    assert bad.returncode == 2 and "TransformReward" in bad.stderr
    options[-1] = 'gymnasium.wrappers:ClipReward:{"max_reward": 0.25}'
    args = [
        "train",
        "ppo",
        "LunarLander-v3",
        *options,
        "--steps",
        "128",
        "--set",
        "n_steps=64",
        "--set",
        "batch_size=64",
    ]
    done = cli(*args, "--out", str(run), "--quiet", "--eval-episodes", "1")
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["env_kwargs"] == {"continuous": True} and config["wrappers"][0]["kwargs"] == {"max_reward": 0.25}
    evaluation = cli("eval", str(run), "--episodes", "2", "--json")
    assert evaluation.returncode == 0, evaluation.stderr
    assert all(r <= 0.25 * 1000 for r in json.loads(evaluation.stdout)["returns"])
    resume = ["--resume", str(run), "--quiet"]
    changed = cli("train", "ppo", "LunarLander-v3", *options[:2], "--steps", "128", *resume)
    assert changed.returncode == 2 and "wrappers" in changed.stderr  # resume checks the env options too
    same = cli(*args, *resume)
    assert same.returncode == 0 and "already finished" in same.stderr, same.stderr


# -- fine-tuning ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_cartpole(tmp_path_factory):
    """PPO with the CartPole preset, trained to ~500 (50k steps, a few seconds on the fast path).

    These tests need a policy that solves CartPole, not a test of learning (tests/learning holds
    those). Which seeds get there in 50k steps depends on the CPU: float rounding differs between
    CPU models' BLAS kernels, so whole runs differ (seed 1 scored >= 475 on the machines this
    fixture was written on and 228.6 on an AMD EPYC, where seeds 0 and 2 score 500). So the first
    of three seeds that evaluates >= 475 is kept."""
    for seed in (1, 0, 2):
        run = tmp_path_factory.mktemp("trained") / "run"
        agent = pgrad.PPO("CartPole-v1", seed=seed)
        agent.learn(50_000, run_dir=run, quiet=True)
        agent.save(run, evaluation=pgrad.evaluate(agent, "CartPole-v1", episodes=5))
        agent.close()
        if json.loads((run / "summary.json").read_text())["eval_mean_return"] >= 475:
            return run
    raise AssertionError("PPO reached no evaluation >= 475 on CartPole-v1 in 50k steps with seeds 1, 0 and 2")


def test_fine_tuning_starts_from_the_trained_policy(trained_cartpole):
    agent = pgrad.load(trained_cartpole, env="CartPole-v1", lr=1e-4)
    assert agent.trainable and agent.config.lr == 1e-4 and agent.config.n_envs == 8  # the saved config, lr on top
    agent.learn(8 * 32 * 24, quiet=True)  # 24 updates, 768 steps per env: every env ends an episode
    returns = agent.logger.episodes
    assert returns and min(row["return"] for row in returns) >= 400, returns  # near 500 from the first update
    assert agent.describe_run()["init_from"]["kind"] == "policy"
    agent.close()
    fresh = pgrad.PPO("CartPole-v1", seed=1)  # the same budget from scratch stays far below
    fresh.learn(8 * 32 * 24, quiet=True)
    assert max(row["return"] for row in fresh.logger.episodes) < 400
    fresh.close()


def test_fine_tuning_from_a_checkpoint_keeps_the_optimiser_state(trained_cartpole):
    agent = pgrad.load(trained_cartpole / "checkpoint", env="CartPole-v1")
    saved = pgrad.load(trained_cartpole)
    import torch

    assert agent.describe_run()["init_from"]["kind"] == "checkpoint"
    assert len(agent.optimizer.state_dict()["state"]) > 0  # Adam moments came with it
    for name, tensor in saved.policy.state_dict().items():
        assert torch.equal(tensor, agent.policy.state_dict()[name]), name
    agent.close()


def test_fine_tuning_refuses_an_env_with_other_spaces(trained_cartpole):
    with pytest.raises(ConfigError, match="was trained on observation space"):
        pgrad.load(trained_cartpole, env="Acrobot-v1")
    with pytest.raises(ConfigError, match="pgrad.load\\(path, env=ENV\\)"):
        pgrad.load(trained_cartpole).learn(64)


def test_init_on_the_command_line(trained_cartpole, tmp_path):
    out = tmp_path / "tuned"
    done = cli(
        "train", "ppo", "CartPole-v1", "--init", str(trained_cartpole), "--set", "lr=1e-4", "--steps", "2048",
        "--out", str(out), "--quiet", "--eval-episodes", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"]["path"] == str(trained_cartpole.resolve()) and config["config"]["lr"] == 1e-4
    assert json.loads((out / "summary.json").read_text())["eval_mean_return"] >= 450
    wrong = cli("train", "a2c", "CartPole-v1", "--init", str(trained_cartpole), "--steps", "64", "--quiet")
    assert wrong.returncode == 2 and "is a ppo run" in wrong.stderr
    other = cli("train", "ppo", "Acrobot-v1", "--init", str(trained_cartpole), "--steps", "64", "--quiet")
    assert other.returncode == 2 and "observation space" in other.stderr


def test_loaded_policy_predicts_as_before(trained_cartpole):
    a, b = pgrad.load(trained_cartpole), pgrad.load(trained_cartpole, env="CartPole-v1")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    assert np.array_equal(a.predict(obs), b.predict(obs))
    b.close()


# -- pgrad check -------------------------------------------------------------------------------


def test_check_command_exit_status_and_findings():
    repo = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    clean = cli("check", "CartPole-v1", "--steps", "500")
    assert clean.returncode == 0 and "no errors" in clean.stdout
    broken = cli("check", "tests.integration.test_doctor:NaNObservation", "--steps", "500", cwd=repo)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert any(line.startswith("error") and "non-finite" in line for line in broken.stdout.splitlines())
    unknown = cli("check", "CartPol-v1")
    assert unknown.returncode == 2 and "did you mean CartPole-v1" in unknown.stderr
    options = cli("check", "LunarLander-v3", "--env-kwarg", "continuous=true", "--steps", "300")
    assert options.returncode == 0 and "action Box(-1.0, 1.0, (2,)" in options.stdout


# -- --track -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")
def test_track_mlflow_from_the_command_line(tmp_path):
    """--track mlflow on a local SQLite store: config, metrics and the final evaluation arrive."""
    pytest.importorskip("mlflow")
    import os

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "DO_NOT_TRACK": "true", "MLFLOW_EXPERIMENT_NAME": "pgrad-test"}
    run = tmp_path / "run"
    args = ["train", "ppo", "CartPole-v1", "--steps", "256", "--preset", "none", "--set", "n_steps=64"]
    args += ["--set", "batch_size=64"]
    done = subprocess.run(
        [sys.executable, "-m", "pgrad.cli", *args, "--out", str(run), "--quiet", "--eval-episodes", "2"]
        + ["--track", "mlflow"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("pgrad-test")
    (tracked,) = client.search_runs([experiment.experiment_id])
    assert tracked.info.run_name == "run" and tracked.info.status == "FINISHED"
    assert tracked.data.params["config.n_steps"] == "64"
    history = client.get_metric_history(tracked.info.run_id, "episode_return_mean")
    assert [m.step for m in history] == [64, 128, 192, 256]
    summary = json.loads((run / "summary.json").read_text())
    assert tracked.data.metrics["eval_mean_return"] == pytest.approx(summary["eval_mean_return"])
