"""Faults and hostile input: each test is a bug that was found, or a promise under a fault."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pgrad
from pgrad.errors import ConfigError

SMALL = ["--preset", "none", "--set", "n_steps=64", "--set", "batch_size=64", "--quiet"]


@pytest.fixture(autouse=True)
def _no_hang():
    """These tests break envs and processes on purpose: a test that hangs ends the session with
    every thread's traceback (after 5 minutes) instead of holding CI until its time limit."""
    import faulthandler

    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def cli(*args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# -- two runs, one folder -------------------------------------------------------------------------


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = tmp_path / "run"
    first = cli("train", "ppo", "CartPole-v1", "--steps", "128", "--seed", "0", "--out", str(run), *SMALL)
    assert first.returncode == 0, first.stderr
    before = (run / "policy.safetensors").read_bytes()
    second = cli("train", "ppo", "CartPole-v1", "--steps", "128", "--seed", "1", "--out", str(run), *SMALL)
    assert second.returncode == 2 and "already holds a pgrad run" in second.stderr
    assert json.loads((run / "config.json").read_text())["seed"] == 0  # untouched
    assert (run / "policy.safetensors").read_bytes() == before
    (run / "best").mkdir()  # what a run with --eval-every leaves beside the rest
    overwrite = ["--seed", "1", "--out", str(run), "--overwrite"]
    again = cli("train", "ppo", "CartPole-v1", "--steps", "128", *overwrite, *SMALL)
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "config.json").read_text())["seed"] == 1 and not (run / "best").exists()
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    refused = cli("train", "ppo", "CartPole-v1", "--steps", "64", "--out", str(other), "--overwrite", *SMALL)
    assert refused.returncode == 2 and "does not hold a pgrad run" in refused.stderr
    assert (other / "thesis.tex").read_text() == "precious"


def test_a_resume_removes_the_temp_files_a_killed_run_left(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "ppo", "CartPole-v1", "--steps", "128", "--out", str(run), *SMALL).returncode == 0
    (run / "summary.json").unlink()  # as if killed before the end
    stale = [run / "checkpoint" / ".state.json.k3j2l1.tmp", run / ".metrics.csv.x9y8z7.tmp"]
    for path in stale:
        path.write_text("half a file")
    done = cli("train", "ppo", "CartPole-v1", "--steps", "128", "--resume", str(run), *SMALL)
    assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in stale)
    assert (run / "checkpoint" / "state.json").is_file()


def hold_lock(run):
    """A child process that holds RUN's lock as a running pgrad train does, until killed."""
    code = (
        "import sys, time; from pathlib import Path; from pgrad.experiments.run_folder import RunFolderLock; "
        "lock = RunFolderLock(Path(sys.argv[1])); lock.acquire(); print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_folder_in_use_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        for extra in ([], ["--overwrite"]):
            refused = cli("train", "ppo", "CartPole-v1", "--steps", "64", "--out", str(run), *extra, *SMALL)
            assert refused.returncode == 2 and f"process {holder.pid}" in refused.stderr, refused.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the dead process's flock: the file it left is no obstacle
    assert (run / ".lock").exists()
    done = cli("train", "ppo", "CartPole-v1", "--steps", "64", "--out", str(run), *SMALL)
    assert done.returncode == 0, done.stderr


def test_a_second_train_while_the_first_runs_cannot_take_over_its_folder(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "pgrad.cli", "train", "ppo", "CartPole-v1", "--steps", "10000000"]
    first = subprocess.Popen([*command, "--out", str(run), *SMALL], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint" / "state.json").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = cli("train", "ppo", "CartPole-v1", "--steps", "64", "--seed", "1", "--out", str(run), *SMALL)
        assert second.returncode == 2 and "in use by another pgrad train" in second.stderr
        resumed = cli("train", "ppo", "CartPole-v1", "--steps", "10000000", "--resume", str(run), *SMALL)
        assert resumed.returncode == 2 and "in use by another pgrad train" in resumed.stderr
        assert json.loads((run / "config.json").read_text())["seed"] == 0
    finally:
        first.send_signal(signal.SIGTERM)  # checkpoints, then stops
        first.wait(timeout=120)


# -- episodes that never end ------------------------------------------------------------------------


def test_evaluation_of_an_env_without_a_time_limit_ends_and_the_policy_is_saved_first(tmp_path):
    """CliffWalking-v1 has no time limit and a deterministic policy can walk in circles: the final
    evaluation hung for ever, and the policy was never written."""
    run = tmp_path / "run"
    done = cli("train", "ppo", "CliffWalking-v1", "--steps", "256", "--out", str(run), "--eval-episodes", "2", *SMALL)
    assert done.returncode == 0, done.stderr
    assert (run / "policy.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    agent = pgrad.load(run)
    result = pgrad.evaluate(agent, episodes=2)
    assert max(result["lengths"]) <= 10_000
    if summary.get("eval_cut_episodes"):  # the policy walked in circles: said so
        assert result["cut_episodes"] == summary["eval_cut_episodes"]
    capped = pgrad.evaluate(agent, episodes=1, max_steps_per_episode=5)
    assert capped["lengths"] == [5] or capped["lengths"][0] < 5


def test_an_env_with_a_time_limit_is_not_cut():
    agent = pgrad.PPO("CartPole-v1", preset="none")
    result = pgrad.evaluate(agent, episodes=2)
    assert "cut_episodes" not in result
    agent.close()


# -- resumed tuning ----------------------------------------------------------------------------------


def test_a_resumed_study_draws_new_points(tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "study"
    common = ["tune", "ppo", "CartPole-v1", "--steps", "512", "--out", str(out), "--quiet", "--preset", "none"]
    assert cli(*common, "--trials", "2").returncode == 0
    resumed = cli(*common, "--trials", "3")
    assert resumed.returncode == 0, resumed.stderr
    import optuna

    trials = optuna.load_study(study_name="ppo-CartPole-v1", storage=f"sqlite:///{out / 'study.db'}").trials
    assert len(trials) == 3
    assert trials[2].params not in (trials[0].params, trials[1].params)


# -- an unreachable Ray cluster ------------------------------------------------------------------------


def test_an_unreachable_ray_cluster_is_a_one_line_error(tmp_path):
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}  # nothing listens there
    started = time.monotonic()
    result = cli(
        "train", "ppo", "CartPole-v1", "--seeds", "0", "1", "--backend", "ray", "--steps", "64",
        "--out", str(tmp_path / "run"), *SMALL, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("pgrad")]
    assert len(lines) == 1 and "Ray" in lines[0] and "127.0.0.1:1" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 300


def test_learning_results_are_unaffected_by_the_lock(tmp_path):
    """The lock file sits in the run folder; the run's numbers are those of a run without it."""
    a = pgrad.PPO("CartPole-v1", preset="none", n_steps=64, batch_size=64)
    a.learn(128, quiet=True)
    run = tmp_path / "run"
    assert cli("train", "ppo", "CartPole-v1", "--steps", "128", "--out", str(run), *SMALL).returncode == 0
    b = pgrad.load(run)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    assert np.array_equal(a.predict(obs), b.predict(obs))
    a.close()
    with pytest.raises(ConfigError):
        pgrad.load(run).learn(64)


# -- hostile files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("saved") / "run"
    agent = pgrad.PPO("CartPole-v1", preset="none", n_steps=64, batch_size=64)
    agent.learn(64, quiet=True)
    agent.save(run)
    agent.close()
    return run


def tampered_copy(saved_run, tmp_path, change):
    import shutil

    run = tmp_path / "tampered"
    shutil.copytree(saved_run, run)
    description = json.loads((run / "policy.json").read_text())
    change(description)
    (run / "policy.json").write_text(json.dumps(description))
    return run


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["config"].update(hidden_sizes=[4_000_000, 4_000_000]),  # 16e12 weights: 64 TB
        lambda d: d["config"].update(hidden_sizes=[40_000, 40_000]),  # 1.6e9 weights: 6 GB
        lambda d: d.update(observation_space={"type": "Discrete", "n": 10**12, "start": 0}),
        lambda d: d.update(action_space={"type": "Discrete", "n": 10**12, "start": 0}),
        lambda d: d["config"].update(pi_hidden_sizes=[100_000, 100_000]),
    ],
    ids=["64TB", "6GB", "huge-one-hot-input", "huge-action-head", "huge-actor"],
)
def test_absurd_shapes_are_refused_before_allocating(saved_run, tmp_path, change):
    import resource

    run = tampered_copy(saved_run, tmp_path, change)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(pgrad.errors.PolicyFileError, match="refusing to build it"):
        pgrad.load(run)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing big was allocated
    result = cli("eval", str(run), "--episodes", "1")
    assert result.returncode == 2 and "refusing to build it" in result.stderr


def test_a_newer_format_a_tampered_header_and_symlinks_out_are_refused(saved_run, tmp_path):
    newer = tampered_copy(saved_run, tmp_path, lambda d: d.update(format_version=d["format_version"] + 1))
    with pytest.raises(pgrad.errors.PolicyFileError, match="format_version"):
        pgrad.load(newer)
    import shutil

    header = tmp_path / "header"
    shutil.copytree(saved_run, header)
    data = bytearray((header / "policy.safetensors").read_bytes())
    data[8:40] = b'{"x":{"dtype":"F32","shape":[99'  # a header that no longer parses
    (header / "policy.safetensors").write_bytes(bytes(data))
    with pytest.raises(pgrad.errors.PolicyFileError, match="corrupted"):
        pgrad.load(header)
    linked = tmp_path / "linked"
    linked.mkdir()
    shutil.copy(saved_run / "policy.json", linked / "policy.json")
    (linked / "policy.safetensors").symlink_to(saved_run / "policy.safetensors")
    with pytest.raises(pgrad.errors.PolicyFileError, match="leads out of its folder"):
        pgrad.load(linked)


def test_a_policy_naming_a_class_imports_nothing(saved_run, tmp_path):
    def name_a_module(description):
        description["policy"]["encoder"] = {"class": "os.system", "kwargs": {"command": "touch pwned"}}

    run = tampered_copy(saved_run, tmp_path, name_a_module)
    modules = set(sys.modules)
    with pytest.raises(pgrad.errors.PolicyFileError, match="custom_objects"):
        pgrad.load(run)
    assert not (tmp_path / "pwned").exists() and set(sys.modules) - modules <= {"pgrad.loading"}


# -- the env fails ------------------------------------------------------------------------------------


class FailingEnv(__import__("gymnasium").Env):
    """CartPole-like dynamics that break in a chosen way at a chosen step of the second env copy."""

    def __init__(self, fault: str = "step", at: int = 40):
        import gymnasium

        self.observation_space = gymnasium.spaces.Box(-10, 10, (4,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.fault, self.at, self.t, self.calls = fault, at, 0, 0
        self.copy_index = FailingEnv.copies = getattr(FailingEnv, "copies", -1) + 1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        if self.fault == "reset" and self.copy_index % 2 == 1:
            raise RuntimeError("the simulator could not start")
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        self.calls += 1
        obs = np.full(4, 0.1 * self.t, np.float32)
        if self.copy_index % 2 == 1 and self.calls == self.at:
            if self.fault == "step":
                raise RuntimeError("lost contact with the robot")
            if self.fault == "shape":
                obs = np.zeros(5, np.float32)
            if self.fault == "die":
                os._exit(3)  # an async worker process that dies
            if self.fault == "nan-obs":
                obs[2] = np.nan
            if self.fault == "inf-obs":
                obs[0] = -np.inf
            if self.fault == "dtype":
                obs = np.array(["a", "b", "c", "d"])  # right shape, not numbers
            if self.fault == "nan-reward":
                return obs, np.nan, False, False, {}
            if self.fault == "inf-reward":
                return obs, np.inf, False, False, {}
        return obs, 1.0, False, self.t >= 20, {}


@pytest.mark.parametrize(
    "fault, vectorization, expected",
    [
        ("step", "sync", "RuntimeError in step at step 7"),
        ("shape", "sync", "in step at step 7"),
        ("reset", "sync", "RuntimeError in reset at step 0"),
        ("step", "async", "RuntimeError in step at step 7"),
        ("die", "async", "in step at step 7"),
        ("nan-obs", "sync", "non-finite observation"),
        ("inf-obs", "sync", "non-finite observation"),
        ("dtype", "sync", "in step at step 7"),
        ("nan-reward", "sync", "non-finite reward"),
        ("inf-reward", "sync", "non-finite reward"),
        ("nan-obs", "async", "non-finite observation"),
    ],
)
def test_an_env_that_fails_ends_training_with_one_line_and_the_checkpoint_kept(
    tmp_path, fault, vectorization, expected
):
    from pgrad.errors import TrainingError
    from pgrad.experiments.runner import TrainSpec, run_training

    FailingEnv.copies = -1
    run = tmp_path / "run"
    spec = TrainSpec(
        algo="ppo",
        env="tests.integration.test_faults:FailingEnv",
        seed=0,
        out=str(run),
        steps=256,
        preset="none",
        overrides=dict(n_envs=2, n_steps=8, batch_size=16, vectorization=vectorization),
        quiet=True,
        env_kwargs={"fault": fault, "at": 4},  # the second copy fails on its 4th step: vector step 4
    )
    started = time.monotonic()
    with pytest.raises(TrainingError) as failure:
        run_training(spec)
    message = str(failure.value)
    assert "\n" not in message and expected in message and "last good checkpoint kept" in message, message
    if fault != "reset" and vectorization == "sync":
        assert "env 1" in message
    assert time.monotonic() - started < 120
    from pgrad.io import load_checkpoint

    state, _ = load_checkpoint(run / "checkpoint")  # the one written before training: loadable
    assert state["total_steps"] == 0


# -- the disk fails -------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["ENOSPC", "EIO"])
@pytest.mark.parametrize("target", ["checkpoint", "policy", "metrics", "tensorboard"])
def test_a_write_that_fails_is_one_line_and_the_previous_checkpoint_stays(tmp_path, monkeypatch, capfd, error, target):
    import errno

    import pgrad.io
    import pgrad.logger
    from pgrad.errors import TrainingError
    from pgrad.experiments.runner import TrainSpec, run_training
    from pgrad.io import load_checkpoint

    code = getattr(errno, error)
    run = tmp_path / "run"
    calls = {"n": 0}
    real_atomic, real_row = pgrad.io.atomic_write_bytes, pgrad.logger.CsvStream.write

    def failing_atomic(path, data):
        name = str(path)
        hit = (target == "checkpoint" and name.endswith("state.safetensors")) or (
            target == "policy" and name.endswith("policy.safetensors")
        )
        if hit:
            calls["n"] += 1
            if target == "policy" or calls["n"] == 3:  # the third checkpoint: two complete ones before it
                raise OSError(code, os.strerror(code), name)
        return real_atomic(path, data)

    def failing_row(self, row):
        if target == "metrics" and self.path.name == "metrics.csv" and row.get("step", 0) >= 192:
            raise OSError(code, os.strerror(code), str(self.path))
        return real_row(self, row)

    real_event = pgrad.logger.TensorBoardEventFile._write

    def failing_event(self, event):  # every TensorBoard event is written through this
        calls["events"] = calls.get("events", 0) + 1
        # about half way: this run writes 24 events (the file's first, then one per metrics row and episode)
        if target == "tensorboard" and calls["events"] >= 12:
            raise OSError(code, os.strerror(code), "tb/events.out.tfevents")
        return real_event(self, event)

    monkeypatch.setattr(pgrad.io, "atomic_write_bytes", failing_atomic)
    monkeypatch.setattr(pgrad.logger.CsvStream, "write", failing_row)
    monkeypatch.setattr(pgrad.logger.TensorBoardEventFile, "_write", failing_event)
    spec = TrainSpec(
        algo="ppo", env="CartPole-v1", seed=0, out=str(run), steps=512, preset="none", quiet=True,
        overrides=dict(n_steps=64, batch_size=64), checkpoint_every=64,
    )  # fmt: skip
    with pytest.raises(TrainingError) as failure:
        run_training(spec)
    message = str(failure.value)
    assert "\n" not in message and os.strerror(code) in message and "last good checkpoint kept" in message
    state, _ = load_checkpoint(run / "checkpoint")
    assert state["total_steps"] in (0, 64, 128, 192, 256, 320, 384, 448, 512)
    assert not list((run / "checkpoint").glob(".*.tmp"))  # no half-written file left behind
    assert "Traceback" not in capfd.readouterr().err  # the one-line error is all that is printed


class HangingEnv(FailingEnv):
    """Its second copy's step never returns (a simulator deadlock)."""

    def step(self, action):
        self.calls += 1
        if self.copy_index % 2 == 1 and self.calls == self.at:
            time.sleep(3600)
        return np.zeros(4, np.float32), 1.0, False, False, {}


def test_a_hanging_async_env_fails_within_the_timeout_and_leaves_no_process(tmp_path):
    from pgrad.errors import TrainingError
    from pgrad.experiments.runner import TrainSpec, run_training

    FailingEnv.copies = -1
    spec = TrainSpec(
        algo="ppo",
        env="tests.integration.test_faults:HangingEnv",
        seed=0,
        out=str(tmp_path / "run"),
        steps=256,
        preset="none",
        overrides=dict(n_envs=2, n_steps=8, batch_size=16, vectorization="async", env_timeout=2.0),
        quiet=True,
        env_kwargs={"at": 4},
    )
    import multiprocessing

    started = time.monotonic()
    with pytest.raises(TrainingError, match="TimeoutError in step at step 7"):
        run_training(spec)
    assert time.monotonic() - started < 60
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]  # the hung worker was killed


def test_fields_added_since_a_checkpoint_are_not_changes_on_resume():
    from pgrad.experiments.resume import config_changes, field_defaults

    defaults = field_defaults(pgrad.PPO.Config)
    now = pgrad.PPO.Config.build({}).to_dict()
    then = {key: value for key, value in now.items() if key not in ("device", "env_timeout")}  # an older run
    assert config_changes(then, now, defaults) == []
    assert config_changes(then, {**now, "device": "auto"}, defaults) == ["device: 'cpu' -> 'auto'"]


# -- a Ray task killed mid-run ----------------------------------------------------------------------


def test_a_killed_ray_seed_task_fails_the_seed_clearly_and_keeps_its_checkpoint(tmp_path):
    """kill -9 of the Ray worker process training seed 1: the run ends within a bounded time with
    one line naming the seed (exit 1), seed 0 finishes, seed 1's checkpoint loads, nothing hangs."""
    pytest.importorskip("ray")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "pgrad.cli", "train", "ppo", "CartPole-v1", "--seeds", "0", "1"]
    command += ["--no-batched", "--backend", "ray", "--workers", "2", "--out", str(run), "--eval-episodes", "1"]
    command += [*SMALL, "--steps", "30000", "--checkpoint-every", "256"]

    def seed_1_worker():
        state = run / "seed_1" / "checkpoint" / "state.json"
        if state.exists() and json.loads(state.read_text()).get("total_steps", 0) >= 256:
            return ray_worker_writing(run / "seed_1")
        return None

    returncode, stderr = run_and_kill(command, seed_1_worker, "seed 1")
    assert returncode == 1, stderr
    failures = [line for line in stderr.splitlines() if line.startswith("pgrad: error")]
    assert len(failures) == 1 and "seed 1" in failures[0] and "Traceback" not in stderr, stderr
    from pgrad.io import load_checkpoint

    assert load_checkpoint(run / "seed_1" / "checkpoint")[0]["total_steps"] >= 256
    assert (run / "seed_0" / "summary.json").is_file()


def test_a_killed_ray_tuning_trial_fails_that_trial_clearly_and_the_study_goes_on(tmp_path):
    """kill -9 of the Ray worker running trial 0: that trial is recorded failed with one line,
    within a bounded time, the other trials complete and the best preset is written."""
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    out = tmp_path / "study"
    command = [sys.executable, "-m", "pgrad.cli", "tune", "ppo", "CartPole-v1", "--trials", "3", "--steps", "20000"]
    command += ["--backend", "ray", "--workers", "1", "--out", str(out), "--preset", "none", "--eval-episodes", "1"]
    returncode, stderr = run_and_kill(command, lambda: process_titled("ray::_ray_trial"), "trial 0", settle=1.0)
    assert returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    failed = [line for line in stderr.splitlines() if line.startswith("trial 0: failed: ray task failed")]
    assert len(failed) == 1, stderr
    assert "trial 1: complete" in stderr and "trial 2: complete" in stderr, stderr
    assert "(2 complete, 0 pruned, 1 failed)" in stderr and (out / "best_preset.toml").is_file()


def run_and_kill(command, find_victim, what, settle=0.0):
    """Run ``command`` on a local Ray of its own; SIGKILL the pid ``find_victim()`` returns (polled
    until it returns one) ``settle`` seconds after it appears; return the exit status and stderr.
    Bounded: the victim must appear within 240 s and the command end within 400 s of the kill."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        victim = None
        while victim is None:
            assert time.monotonic() - started < 240 and process.poll() is None, f"{what} never started"
            victim = find_victim()
            time.sleep(0.2)
        time.sleep(settle)
        os.kill(victim, signal.SIGKILL)
        _, stderr = process.communicate(timeout=400)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


def process_titled(prefix):
    """The pid of a process whose command line starts with ``prefix`` (Ray titles a worker by its task)."""
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            with open(f"/proc/{proc}/cmdline", "rb") as cmdline:
                if cmdline.read().startswith(prefix.encode()):
                    return int(proc)
        except OSError:
            continue
    return None


def ray_worker_writing(seed_folder):
    """The pid of the process that has ``seed_folder/metrics.csv`` open (the Ray worker training it)."""
    target = str((seed_folder / "metrics.csv").resolve())
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{proc}/fd"):
                if os.readlink(f"/proc/{proc}/fd/{fd}") == target:
                    return int(proc)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_non_finite_hyperparameters_are_refused(value):
    with pytest.raises(ConfigError, match="lr="):
        pgrad.PPO.Config.build({"lr": value})
    with pytest.raises(ConfigError, match="log_std_init="):
        pgrad.PPO.Config.build({"log_std_init": value})
