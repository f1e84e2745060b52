"""Training speed of pgrad next to Stable-Baselines3, and both next to the bare simulator.

For each case (algorithm x env) one invocation runs, as fresh subprocesses, alternating A B A B:

* ``pgrad``: ``pgrad.<ALGO>(env, preset=None, ...).learn(steps)``;
* ``sb3``: Stable-Baselines3's same algorithm with the same settings;
* ``raw``: the same env stepped ``steps`` times with random actions (pre-drawn from the action
  space, so only the env is timed), resetting at episode ends: the ceiling for any trainer.

and prints medians, the pgrad/SB3 ratio of steps per second, and the overhead factor of each
trainer, ``training time / raw stepping time`` for the same number of steps (1.0 would mean the
trainer costs nothing beyond the simulator).

Settings, the same on both sides (``--set KEY=VALUE`` adds pgrad-only overrides on top):

* PPO: the PPO paper's MuJoCo settings (Schulman et al. 2017, Table 3): 1 env, 2048 steps per
  rollout, 10 epochs, 32 minibatches of 64, Adam 3e-4 (eps 1e-5), gamma 0.99, lambda 0.95, clip
  0.2, no entropy bonus, vf_coef 0.5, max grad norm 0.5, constant lr, no observation
  normalisation (SB3 does neither without VecNormalize and a schedule), separate 2x64 tanh actor
  and critic, state-independent log-std starting at 0.
* A2C: SB3's defaults, which pgrad's A2C also uses: 1 env, 5 steps per update, RMSprop 7e-4
  (alpha 0.99, eps 1e-5), gamma 0.99, lambda 1, vf_coef 0.5, max grad norm 0.5, 2x64 tanh.
* One torch thread per process, CPU.

The clock covers the whole ``learn()`` call (rollouts, returns, updates, logging), not imports
or agent construction. The machine may be shared, so the order alternates and every figure is a
median over ``--repeats``; ratios are computed from medians taken in the same session.

    .venv/bin/python benchmarks/speed.py                          # all cases, 3 repeats
    .venv/bin/python benchmarks/speed.py --cases ppo:HalfCheetah-v5 --repeats 5
    .venv/bin/python benchmarks/speed.py --cases ppo:HalfCheetah-v5 --profile cprofile   # where pgrad's time goes
    .venv/bin/python benchmarks/speed.py --commit HEAD            # benchmark a commit, not the working tree

``--commit REV`` benchmarks ``git archive REV pgrad`` instead of the working tree, so edits made
while the benchmark runs cannot leak into some of its runs.

SB3 is the ``bench`` extra (``pip install -e .[bench]``), never a pgrad dependency; without it the
SB3 runs are skipped. The bench extra also installs numba, so pgrad's runs take the compiled path
(pgrad/numpy_twin/compiled.py); ``PGRAD_NUMBA=0`` in the environment turns it off for every pgrad
run of an invocation, and ``--goals`` prints which was used.

**The speed goals of issue 25 (``--goals``).** One command runs every goal as a section and ends
with one table (goal, measured ratio, target, met or not)::

    .venv/bin/python benchmarks/speed.py --goals                      # ~10-15 min on 2 cores
    .venv/bin/python benchmarks/speed.py --goals --scale 4 --repeats 5 --json goals.json
    .venv/bin/python benchmarks/speed.py --goals --steps 2048 --repeats 1   # plumbing check
    .venv/bin/python benchmarks/speed.py --goals --sections ppo batched

Every run is a fresh process; within a section the runs alternate (A B C, C B A, ...) for
``--repeats`` rounds and each ratio is a ratio of medians from the same invocation, since the
machine's speed moves by 2x from day to day. Budgets (env steps per run; ``--scale`` multiplies
them, ``--steps`` replaces them all; each is rounded up to whole rollouts) are in ``GOAL_BUDGETS``.

* ``ppo``: PPO, one seed, HalfCheetah-v5, the PPO paper settings above, in pgrad (Gymnasium envs,
  the default, and ``vectorization=envpool``) and SB3, next to raw stepping of one env with each
  backend: Gymnasium (``gymnasium.make``, as ``raw`` above) and EnvPool (``envpool.make(...,
  num_envs=1, batch_size=1, num_threads=1)``, the pool pgrad's envpool backend builds). The
  *fastest backend* is the one with the higher median raw rate in this invocation, and the table
  names it. Goals: overhead factor = fastest raw steps/s over pgrad's steps/s (the faster of its
  two backends, named), <= 2.0; pgrad (Gymnasium envs) / SB3 steps/s >= 6.
* ``batched``: 5 seeds (1-5) seed-batched, PPO paper settings, in the balanced groups ``pgrad
  train --seeds 1 2 3 4 5 --batched`` makes by default (``seed_groups``: [1, 2], [3, 4], [5] on
  2 cores, one process each), against the machine's two-core raw capacity. Capacity is the best
  of three ways of stepping HalfCheetah-v5 with both cores: two Gymnasium processes, two EnvPool
  processes (one env each), one EnvPool pool of 2 envs on 2 threads. Processes that run together
  start their clocks at a barrier (after their imports and set-up); a rate is all their steps
  over the window from the first start to the last end. Goal: batched / capacity >= 0.6.
* ``lstm``: recurrent PPO on ``pgrad/CartPoleNoVel-v1`` (CartPole observing only ``[x, theta]``;
  sb3-contrib gets the same env through ``gym.make`` of pgrad's registration) with pgrad's shipped
  ppo-lstm preset (RL Zoo hyperparams/ppo_lstm.yml CartPoleNoVel-v1 and its model card: 8 envs x
  32 steps, batch 256, 20 epochs, gamma 0.98, lambda 0.8, Adam 1e-3 (eps 1e-5) annealed linearly,
  clip 0.2, no entropy bonus, vf_coef 0.5, max grad norm 0.5, LSTM 64 for the actor and another
  for the critic, pi [64] vf [64] ReLU, observation and reward normalisation: VecNormalize on the
  sb3-contrib side). pgrad's ``ppo-lstm`` against sb3-contrib's ``RecurrentPPO`` (``MlpLstmPolicy``),
  whose every setting is read from pgrad's preset and config. Goal: >= 3x steps/s. Needs
  ``sb3-contrib`` (the ``bench`` extra), or the section says "skipped: pip install -e '.[bench]'".
* ``per-update``: benchmarks/per_update_cost.py, run as it is (its own interleaved rounds, its
  default baseline commit unless ``--per-update-baseline``): one-step actor-critic (CartPole-v1
  preset; Pendulum-v1 with a run folder) and REINFORCE (CartPole-v1 preset), time per update at
  the baseline over now. Goal: >= 3x each.
* ``cnn``: PPO on MinAtar/Breakout-v1 images through benchmarks/image_sb3.py's ``run_pgrad`` and
  ``run_sb3`` (imported: CleanRL ppo_atari.py's settings, 8 envs x 128 steps, pgrad's small CNN on
  both sides, as SB3's features extractor; CPU, one torch thread). Goal: >= 2x steps/s.

``--goals`` measures the working tree (``--commit``, ``--baseline``, ``--parts``, ``--profile``
and ``--set`` do not combine with it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ("ppo:HalfCheetah-v5", "ppo:CartPole-v1", "a2c:HalfCheetah-v5", "a2c:CartPole-v1")
NET = dict(hidden_sizes=(64, 64), activation="tanh")

# The same settings spelled once for each library (see the module docstring).
PGRAD_KWARGS = {
    "ppo": dict(
        preset=None,
        n_envs=1,
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        lr=3e-4,
        adam_eps=1e-5,
        gamma=0.99,
        gae_lambda=0.95,
        clip_coef=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        anneal_lr=False,
        normalize_obs=False,
        log_std_init=0.0,
        **NET,
    ),
    "a2c": dict(
        preset=None,
        n_envs=1,
        n_steps=5,
        lr=7e-4,
        gamma=0.99,
        gae_lambda=1.0,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        optimizer="rmsprop",
        rmsprop_alpha=0.99,
        optimizer_eps=1e-5,
        anneal_lr=False,
        normalize_advantage=False,
        normalize_obs=False,
        log_std_init=0.0,
        **NET,
    ),
}
SB3_KWARGS = {
    "ppo": dict(
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        learning_rate=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
    ),
    "a2c": dict(
        n_steps=5,
        learning_rate=7e-4,
        gamma=0.99,
        gae_lambda=1.0,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        rms_prop_eps=1e-5,
        use_rms_prop=True,
        normalize_advantage=False,
    ),
}


# -- one timed run, in its own process ---------------------------------------------------------


def _run_pgrad(algo: str, env_id: str, steps: int, seed: int, overrides: dict, profiler: str | None) -> dict:
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.ALGORITHMS[algo](env_id, seed=seed, **{**PGRAD_KWARGS[algo], **overrides})
    stamps: list[tuple[float, int]] = []  # (clock, env steps so far) after every iteration

    def stamp(agent, row) -> None:
        stamps.append((time.perf_counter(), agent.total_steps))

    result = _timed(lambda: agent.learn(steps, quiet=True, callback=stamp), profiler)
    if len(stamps) >= 2:  # the rate after the first iteration, whose one-off costs it leaves out
        (start, first_steps), (end, last_steps) = stamps[0], stamps[-1]
        result["steady_steps_per_s"] = (last_steps - first_steps) / (end - start)
    result.update(
        steps_done=agent.total_steps,
        recent_return=_finite_or_none(agent.logger.recent_return),
        torch_threads=torch.get_num_threads(),
        pgrad_file=pgrad.__file__,
        compiled_act=getattr(agent, "compiled_act", lambda: None)(),  # None: a commit from before it
    )
    agent.close()
    return result


def _run_parts(algo: str, env_id: str, seed: int, overrides: dict) -> dict:
    """pgrad's parts, timed apart: a rollout (us per env step), a whole iteration minus its rollout
    (ms per minibatch for PPO, per update for A2C) and ``predict`` on one observation (us)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.ALGORITHMS[algo](env_id, seed=seed, **{**PGRAD_KWARGS[algo], **overrides})
    c = agent.config
    agent.learn(c.n_steps * c.n_envs, quiet=True)  # warm up: first rollout, first update
    # Each iteration's rollout is timed inside the iteration (a wrapper around collect), so its
    # update is the iteration minus its own rollout; medians over at least 8 iterations and
    # 16k steps. (Timing rollouts and iterations in separate loops and subtracting the means
    # varied 2x between invocations: a single PPO iteration per loop at 2048 steps.)
    collect, rollout_seconds = agent.collector.collect, []

    def timed_collect(*args, **kwargs):
        start = time.perf_counter()
        result = collect(*args, **kwargs)
        rollout_seconds.append(time.perf_counter() - start)
        return result

    agent.collector.collect = timed_collect
    update_seconds = []
    for _ in range(max(8, 16384 // (c.n_steps * c.n_envs))):
        start = time.perf_counter()
        agent.train_iteration(1.0)
        update_seconds.append(time.perf_counter() - start - rollout_seconds[-1])
    collect_s, update_s = float(np.median(rollout_seconds)), float(np.median(update_seconds))
    updates = c.n_epochs * max(1, round(c.n_steps * c.n_envs / c.batch_size)) if algo == "ppo" else 1
    obs = agent.observation_space.sample()
    agent.predict(obs)
    start = time.perf_counter()
    for _ in range(2000):
        agent.predict(obs)
    predict_s = (time.perf_counter() - start) / 2000
    agent.close()
    return {
        "wall_s": 1.0,
        "steps_done": 0,
        "collect_us_per_step": collect_s / (c.n_steps * c.n_envs) * 1e6,
        "update_ms_per_minibatch": update_s / updates * 1e3,
        "predict_us": predict_s * 1e6,
        "load1_before": os.getloadavg()[0],
        "pgrad_file": pgrad.__file__,
    }


def _run_sb3(algo: str, env_id: str, steps: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    # Monitor records episode returns, as pgrad's collector does; it costs next to nothing.
    env = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    cls = {"ppo": stable_baselines3.PPO, "a2c": stable_baselines3.A2C}[algo]
    model = cls(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        verbose=0,
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
        **SB3_KWARGS[algo],
    )
    result = _timed(lambda: model.learn(total_timesteps=steps), None)
    returns = [info["r"] for info in model.ep_info_buffer]
    result.update(
        steps_done=int(model.num_timesteps),
        recent_return=statistics.fmean(returns) if returns else None,
        torch_threads=torch.get_num_threads(),
    )
    env.close()
    return result


def _run_raw(env_id: str, steps: int, seed: int) -> dict:
    import gymnasium as gym

    import pgrad.envs  # noqa: F401  the same MuJoCo warning filter pgrad's runs get

    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(min(steps, 10_000))]

    def stepping() -> None:
        env.reset(seed=seed)
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
            if terminated or truncated:
                env.reset()

    result = _timed(stepping, None)
    result.update(steps_done=steps)
    env.close()
    return result


def _timed(work, profiler: str | None) -> dict:
    """Run ``work()`` under the wall clock and the process CPU clock (and a profiler if asked)."""
    load_before = os.getloadavg()[0]
    extra: dict = {}
    if profiler == "cprofile":
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    elif profiler == "pyinstrument":
        from pyinstrument import Profiler

        prof = Profiler(interval=0.001)
        prof.start()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler == "cprofile":
        import pstats

        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    elif profiler == "pyinstrument":
        prof.stop()
        print(prof.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    return {"wall_s": wall, "cpu_s": cpu, "load1_before": load_before, "load1_after": os.getloadavg()[0], **extra}


def _finite_or_none(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


# -- issue 25: every speed goal, side by side (--goals) ------------------------------------------

GOAL_SECTIONS = ("ppo", "batched", "lstm", "per-update", "cnn")
BATCHED_SEEDS = [1, 2, 3, 4, 5]
LSTM_ENV = "pgrad/CartPoleNoVel-v1"
CNN_ENV = "MinAtar/Breakout-v1"
# Env steps per run of each section by default (--scale multiplies them, --steps replaces them
# all). Chosen so that ``--goals`` takes ~10-15 minutes on 2 loaded cores, not to favour a side.
GOAL_BUDGETS = {"raw": 20_000, "ppo": 20_480, "batched": 20_480, "lstm": 8_192, "cnn": 12_288}
# Each budget is rounded up to a whole number of rollouts (PPO paper: 2048 steps of 1 env;
# ppo-lstm: 8 envs x 32; image PPO: 8 envs x 128), so both sides train the same iterations.
GOAL_ROUND = {"raw": 1, "ppo": 2048, "batched": 2048, "lstm": 256, "cnn": 1024}
# benchmarks/per_update_cost.py's cases that are goals (its SB3 case is a reference, not a goal).
PER_UPDATE_CASES = ("actor-critic CartPole-v1", "actor-critic Pendulum-v1 run folder", "reinforce CartPole-v1")
BENCH_HINT = "skipped: pip install -e '.[bench]'"


def _barrier(folder: str | None, parties: int) -> None:
    """Wait until ``parties`` processes have got here (one file each in ``folder``).

    Processes meant to run at once (the seed-batched groups, the two-core raw stepping) start
    their clocks together this way, after their imports and set-up, which take unequal times.
    """
    if folder is None:
        return
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 600
    while len(os.listdir(folder)) < parties:
        if time.monotonic() > deadline:
            raise RuntimeError(f"barrier: {parties} processes expected in {folder}, 10 minutes passed")
        time.sleep(0.001)


def _clocked(work, barrier: str | None = None, parties: int = 1) -> dict:
    """``work()`` timed, with epoch stamps at its start and end (for processes that overlap)."""
    _barrier(barrier, parties)
    load_before = os.getloadavg()[0]
    t_start, wall = time.time(), time.perf_counter()
    work()
    wall, t_end = time.perf_counter() - wall, time.time()
    return {"wall_s": wall, "t_start": t_start, "t_end": t_end, "load1_before": load_before}


def _goal_raw(
    backend: str, env_id: str, steps: int, seed: int, n_envs: int = 1, threads: int = 1, barrier=None, parties=1
) -> dict:
    """Raw stepping: ``steps`` steps of ``n_envs`` envs of ``backend`` with pre-drawn random actions.

    ``gymnasium``: ``gymnasium.make`` (one env), reset at episode ends, as ``_run_raw``.
    ``envpool``: ``envpool.make(env_id, env_type="gymnasium", num_envs=n_envs, batch_size=n_envs,
    num_threads=threads)``, the synchronous pool pgrad's ``vectorization=envpool`` builds
    (pgrad/envs/envpool_backend.py); EnvPool resets by itself on the step after an episode's end,
    and that step is counted (one in 1000 on MuJoCo's time limit).
    """
    import gymnasium as gym
    import numpy as np

    import pgrad.envs  # noqa: F401  the same MuJoCo warning filter pgrad's runs get

    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = np.stack([env.action_space.sample() for _ in range(min(steps, 10_000))])
    if backend == "gymnasium":
        if n_envs != 1:
            raise ValueError("raw gymnasium stepping is one env per process")
        env.reset(seed=seed)

        def stepping() -> None:
            for i in range(steps):
                _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
                if terminated or truncated:
                    env.reset()

    else:
        import envpool

        env.close()
        pool = envpool.make(
            env_id, env_type="gymnasium", num_envs=n_envs, batch_size=n_envs, num_threads=threads, seed=seed
        )
        pool.reset()
        batches = np.repeat(actions[:, None], n_envs, axis=1)  # (T, n_envs, ...): every env, the same action

        def stepping() -> None:
            for i in range(steps):
                pool.step(batches[i % len(batches)])

    result = _clocked(stepping, barrier, parties)
    result["steps_done"] = steps * n_envs
    return result


def _goal_batched(env_id: str, seeds: list[int], steps: int, barrier=None, parties=1) -> dict:
    """One seed-batched group: ``SeedBatchedPPO(env_id, seeds)`` at the PPO paper settings, ``learn(steps)``."""
    import torch

    torch.set_num_threads(1)
    from pgrad.algos.ppo_batched import SeedBatchedPPO

    agent = SeedBatchedPPO(env_id, seeds, **PGRAD_KWARGS["ppo"])
    result = _clocked(lambda: agent.learn(steps, quiet=True), barrier, parties)
    result["steps_done"] = sum(member.total_steps for member in agent.agents)
    agent.close()
    return result


def _goal_lstm(impl: str, steps: int, seed: int) -> dict:
    """Recurrent PPO on ``pgrad/CartPoleNoVel-v1`` with pgrad's shipped ppo-lstm preset, in pgrad
    (``ppo-lstm``) or in sb3-contrib (``RecurrentPPO``) with the same numbers (module docstring)."""
    import torch

    torch.set_num_threads(1)
    import gymnasium as gym

    import pgrad
    from pgrad.config import load_preset

    values = load_preset("ppo-lstm", LSTM_ENV)
    if impl == "pgrad":
        agent = pgrad.ALGORITHMS["ppo-lstm"](LSTM_ENV, seed=seed, preset=None, **values)
        result = _timed(lambda: agent.learn(steps, quiet=True), None)
        result.update(steps_done=agent.total_steps, recent_return=_finite_or_none(agent.logger.recent_return))
        agent.close()
        return result
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    # pgrad's defaults for what the preset leaves out (clip 0.2, vf_coef 0.5, grad norm 0.5,
    # advantage normalisation, Adam eps 1e-5), read from its config rather than restated.
    config = pgrad.ALGORITHMS["ppo-lstm"].Config(**values)
    lr = config.lr
    # The env is pgrad's registration (gym.make of the same id): CartPole observing [x, theta].
    envs = DummyVecEnv([lambda: Monitor(gym.make(LSTM_ENV)) for _ in range(config.n_envs)])
    # Observation and reward normalisation, as the preset's normalize_obs and normalize_reward
    # (the RL Zoo's ``normalize: true`` for this env is VecNormalize).
    envs = VecNormalize(envs, norm_obs=config.normalize_obs, norm_reward=config.normalize_reward, gamma=config.gamma)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        envs,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=(lambda progress: lr * progress) if config.anneal_lr else lr,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_coef,
        normalize_advantage=config.norm_adv,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=dict(
            lstm_hidden_size=config.lstm_hidden_size,
            n_lstm_layers=config.lstm_layers,
            shared_lstm=config.shared_lstm,
            enable_critic_lstm=not config.shared_lstm,
            net_arch=dict(pi=list(config.hidden_sizes), vf=list(config.hidden_sizes)),
            activation_fn=torch.nn.ReLU,
            optimizer_kwargs=dict(eps=config.adam_eps),
        ),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    result = _timed(lambda: model.learn(total_timesteps=steps), None)
    returns = [info["r"] for info in model.ep_info_buffer]
    result.update(steps_done=int(model.num_timesteps), recent_return=statistics.fmean(returns) if returns else None)
    envs.close()
    return result


def _goal_cnn(impl: str, steps: int, seed: int) -> dict:
    """Image PPO on MinAtar Breakout through benchmarks/image_sb3.py's own runs (imported)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import image_sb3

    run = image_sb3.run_pgrad if impl == "pgrad" else image_sb3.run_sb3
    load_before = os.getloadavg()[0]
    out = run(CNN_ENV, seed, steps)  # the clock covers learn() only; "eval" is 10 greedy episodes after it
    return {"wall_s": out["seconds"], "steps_done": steps, "eval_return": out["eval"], "load1_before": load_before}


GOAL_WORKERS = {"raw": _goal_raw, "batched": _goal_batched, "lstm": _goal_lstm, "cnn": _goal_cnn}


def _goal_worker(name: str, payload: dict) -> dict:
    if name == "pgrad":
        return _run_pgrad("ppo", payload["env_id"], payload["steps"], payload["seed"], payload["overrides"], None)
    if name == "sb3":
        return _run_sb3("ppo", payload["env_id"], payload["steps"], payload["seed"])
    return GOAL_WORKERS[name](**payload)


def _goal_command(name: str, payload: dict) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--goal-worker", name, "--worker-args", json.dumps(payload)]


def _goal_finish(done: tuple[int, str, str], what: str) -> dict:
    """A worker's (exit status, stdout, stderr): its JSON result, or exit with its error."""
    returncode, stdout, stderr = done
    if returncode != 0:
        sys.exit(f"{what} failed (exit {returncode}):\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _goal_run(what: str, name: str, payload: dict) -> dict:
    """One worker in a fresh process (a scratch cwd: MuJoCo appends warnings to ./MUJOCO_LOG.TXT)."""
    with tempfile.TemporaryDirectory(prefix="pgrad_speed_") as scratch:
        done = subprocess.run(_goal_command(name, payload), capture_output=True, text=True, cwd=scratch)
    result = _goal_finish((done.returncode, done.stdout, done.stderr), what)
    result["steps_per_s"] = result["steps_done"] / result["wall_s"]
    return result


def _goal_run_together(what: str, name: str, payloads: list[dict]) -> dict:
    """Several workers at once, their clocks started together by a barrier; the rate is all
    their steps over the window from the first start to the last end (so a process that
    finishes early, leaving its core idle, costs what it costs a user)."""
    with tempfile.TemporaryDirectory(prefix="pgrad_speed_") as scratch:
        barrier = Path(scratch, "barrier")
        barrier.mkdir()
        extra = {"barrier": str(barrier), "parties": len(payloads)}
        processes = [
            subprocess.Popen(
                _goal_command(name, {**payload, **extra}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for payload in payloads
        ]
        outputs = [process.communicate() for process in processes]
    parts = [_goal_finish((p.returncode, out, err), what) for p, (out, err) in zip(processes, outputs)]
    window = max(part["t_end"] for part in parts) - min(part["t_start"] for part in parts)
    steps = sum(part["steps_done"] for part in parts)
    return {
        "steps_done": steps,
        "wall_s": window,
        "steps_per_s": steps / window,
        "load1_before": min(part["load1_before"] for part in parts),
        "parts_steps_per_s": [round(part["steps_done"] / part["wall_s"]) for part in parts],
    }


def _alternate(section: str, runners: dict, repeats: int) -> dict[str, list[dict]]:
    """Each runner once per repeat, the order reversed every other repeat (A B C, C B A, ...)."""
    runs: dict[str, list[dict]] = {name: [] for name in runners}
    for repeat in range(repeats):
        for name in list(runners) if repeat % 2 == 0 else list(runners)[::-1]:
            run = runners[name]()
            runs[name].append(run)
            print(
                f"{section:<10} repeat {repeat} {name:<26} {run['steps_per_s']:9.0f} steps/s  wall "
                f"{run['wall_s']:6.2f} s  load1 {run['load1_before']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    return runs


def _median(runs: list[dict], key: str = "steps_per_s") -> float:
    return statistics.median(run[key] for run in runs)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _goal_ppo(budget: dict, args: argparse.Namespace, rows: list, notes: list) -> dict:
    """PPO, one seed, HalfCheetah-v5: pgrad (Gymnasium and EnvPool envs), SB3, and raw stepping
    of one env with each backend, alternating."""
    env_id, seed, steps = "HalfCheetah-v5", args.seed, budget["ppo"]
    ppo = {"env_id": env_id, "steps": steps, "seed": seed}
    runners = {
        "pgrad": lambda: _goal_run("pgrad PPO", "pgrad", {**ppo, "overrides": {}}),
        "pgrad vectorization=envpool": lambda: _goal_run(
            "pgrad PPO envpool", "pgrad", {**ppo, "overrides": {"vectorization": "envpool"}}
        ),
        "sb3": lambda: _goal_run("SB3 PPO", "sb3", ppo),
        "raw gymnasium": lambda: _goal_run(
            "raw gymnasium", "raw", {"backend": "gymnasium", "env_id": env_id, "steps": budget["raw"], "seed": seed}
        ),
        "raw envpool": lambda: _goal_run(
            "raw envpool", "raw", {"backend": "envpool", "env_id": env_id, "steps": budget["raw"], "seed": seed}
        ),
    }
    if not _has("stable_baselines3"):
        del runners["sb3"]
    if not _has("envpool"):
        del runners["pgrad vectorization=envpool"], runners["raw envpool"]
    runs = _alternate("ppo", runners, args.repeats)
    medians = {name: _median(mine) for name, mine in runs.items()}
    raw = {name: medians[name] for name in ("raw gymnasium", "raw envpool") if name in medians}
    fastest = max(raw, key=raw.get)
    trainers = [name for name in ("pgrad", "pgrad vectorization=envpool") if name in medians]
    best = max(trainers, key=medians.get)
    notes.append(
        f"ppo: {env_id}, {steps:,} steps per training run, {budget['raw']:,} per raw run; medians (steps/s): "
        + ", ".join(f"{name} {value:,.0f}" for name, value in medians.items())
        + f"; fastest backend (one env): {fastest.removeprefix('raw ')}"
    )
    rows.append(
        {
            "goal": f"PPO {env_id} 1 seed: overhead factor ({best}; raw: {fastest.removeprefix('raw ')}, 1 env)",
            "measured": raw[fastest] / medians[best],
            "target": 2.0,
            "at_most": True,
        }
    )
    steady = {
        name: _median(runs[name], "steady_steps_per_s") for name in trainers if "steady_steps_per_s" in runs[name][0]
    }
    if steady:
        best_steady = max(steady, key=steady.get)
        iterations = steps // 2048
        notes.append(
            f"ppo steady state (iterations 2-{iterations} of {iterations}, leaving out the first and its one-off "
            "costs, such as loading compiled code), medians (steps/s): "
            + ", ".join(f"{name} {value:,.0f}" for name, value in steady.items())
        )
        rows.append(
            {
                "goal": f"PPO {env_id} 1 seed: overhead factor in steady state ({best_steady}; after the first "
                "iteration)",
                "measured": raw[fastest] / steady[best_steady],
                "target": 2.0,
                "at_most": True,
            }
        )
    if "sb3" in medians:
        ratio, text = medians["pgrad"] / medians["sb3"], None
    else:
        ratio, text = None, BENCH_HINT
    rows.append({"goal": f"PPO {env_id} 1 seed: pgrad / SB3 steps/s", "measured": ratio, "target": 6.0, "note": text})
    return {"runs": runs, "medians": medians, "fastest_backend": fastest}


def _goal_batched_section(budget: dict, args: argparse.Namespace, rows: list, notes: list) -> dict:
    """5 PPO seeds seed-batched in balanced groups, against the two-core raw stepping capacity."""
    from pgrad.experiments.seed_batched import seed_groups

    env_id, steps, raw_steps, seed = "HalfCheetah-v5", budget["batched"], budget["raw"], args.seed
    groups = seed_groups(BATCHED_SEEDS, None)  # pgrad train --seeds ... --batched: balanced groups
    raw = {"env_id": env_id, "steps": raw_steps}
    runners = {
        "seed-batched": lambda: _goal_run_together(
            "seed-batched PPO", "batched", [{"env_id": env_id, "seeds": group, "steps": steps} for group in groups]
        ),
        "2 processes gymnasium": lambda: _goal_run_together(
            "raw gymnasium x2",
            "raw",
            [{**raw, "backend": "gymnasium", "seed": seed}, {**raw, "backend": "gymnasium", "seed": seed + 1}],
        ),
        "2 processes envpool": lambda: _goal_run_together(
            "raw envpool x2",
            "raw",
            [{**raw, "backend": "envpool", "seed": seed}, {**raw, "backend": "envpool", "seed": seed + 1}],
        ),
        "envpool 2 envs 2 threads": lambda: _goal_run(
            "raw envpool 2 threads", "raw", {**raw, "backend": "envpool", "seed": seed, "n_envs": 2, "threads": 2}
        ),
    }
    if not _has("envpool"):
        del runners["2 processes envpool"], runners["envpool 2 envs 2 threads"]
    runs = _alternate("batched", runners, args.repeats)
    medians = {name: _median(mine) for name, mine in runs.items()}
    capacity = max((name for name in medians if name != "seed-batched"), key=medians.get)
    notes.append(
        f"batched: {env_id}, seeds {BATCHED_SEEDS} in groups {groups} (one process each), {steps:,} steps per "
        f"seed; raw capacity: {raw_steps:,} steps per process; medians (steps/s over the window from the first "
        "start to the last end, clocks started by a barrier): "
        + ", ".join(f"{name} {value:,.0f}" for name, value in medians.items())
        + f"; capacity taken from: {capacity}"
    )
    rows.append(
        {
            "goal": f"5 seeds seed-batched {groups} / two-core raw capacity ({capacity})",
            "measured": medians["seed-batched"] / medians[capacity],
            "target": 0.6,
        }
    )
    return {"runs": runs, "medians": medians, "groups": groups, "capacity_from": capacity}


def _goal_pair_section(
    kind: str,
    reference: str,
    module: str,
    goal: str,
    target: float,
    detail: str,
    budget: dict,
    args: argparse.Namespace,
    rows: list,
    notes: list,
) -> dict:
    """pgrad against one reference library (``reference``, importable as ``module``) on the workload
    ``kind``: alternating runs, the goal row is the ratio of their medians of steps/s."""
    if not _has(module):
        rows.append({"goal": goal, "measured": None, "target": target, "note": BENCH_HINT})
        return {}
    steps = budget[kind]
    runners = {
        impl: (lambda impl=impl: _goal_run(f"{impl} {kind}", kind, {"impl": impl, "steps": steps, "seed": args.seed}))
        for impl in ("pgrad", reference)
    }
    runs = _alternate(kind, runners, args.repeats)
    medians = {name: _median(mine) for name, mine in runs.items()}
    notes.append(
        f"{kind}: {detail}, {steps:,} steps per run; medians (steps/s): "
        + ", ".join(f"{name} {value:,.0f}" for name, value in medians.items())
    )
    rows.append({"goal": goal, "measured": medians["pgrad"] / medians[reference], "target": target})
    return {"runs": runs, "medians": medians}


def _goal_lstm_section(budget: dict, args: argparse.Namespace, rows: list, notes: list) -> dict:
    goal = f"ppo-lstm / sb3-contrib RecurrentPPO steps/s, {LSTM_ENV}"
    return _goal_pair_section("lstm", "sb3-contrib", "sb3_contrib", goal, 3.0, LSTM_ENV, budget, args, rows, notes)


def _goal_cnn_section(budget: dict, args: argparse.Namespace, rows: list, notes: list) -> dict:
    goal = f"CNN PPO / SB3 (same CNN) steps/s, {CNN_ENV}"
    detail = f"{CNN_ENV} (benchmarks/image_sb3.py's runs)"
    return _goal_pair_section("cnn", "sb3", "stable_baselines3", goal, 2.0, detail, budget, args, rows, notes)


def _goal_per_update_section(budget: dict, args: argparse.Namespace, rows: list, notes: list) -> dict:
    """benchmarks/per_update_cost.py, run as it is (it alternates baseline and working tree itself)."""
    script = Path(__file__).resolve().parent / "per_update_cost.py"
    with tempfile.TemporaryDirectory(prefix="pgrad_speed_") as scratch:
        out = Path(scratch, "per_update.json")
        command = [sys.executable, str(script), "--repeats", str(args.repeats), "--json", str(out)]
        command += ["--cases", *PER_UPDATE_CASES]
        if args.per_update_baseline:
            command += ["--baseline", args.per_update_baseline]
        done = subprocess.run(command, capture_output=True, text=True, cwd=scratch)
        if done.returncode != 0:
            sys.exit(f"benchmarks/per_update_cost.py failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        print(done.stdout, file=sys.stderr, flush=True)
        result = json.loads(out.read_text())
    baseline = result["baseline"][:12]
    for case in PER_UPDATE_CASES:
        summary = result["summary"][case]
        rows.append(
            {
                "goal": f"{case}: per-update cost at {baseline} / now",
                "measured": summary["speedup_per_update"],
                "target": 3.0,
            }
        )
    notes.append(
        f"per-update: benchmarks/per_update_cost.py --repeats {args.repeats}, baseline {baseline}; ms per update "
        + ", ".join(
            f"{case} {result['summary'][case]['baseline_ms_per_update']:.3f} -> "
            f"{result['summary'][case]['working_ms_per_update']:.3f}"
            for case in PER_UPDATE_CASES
        )
    )
    return result


GOAL_RUNNERS = {
    "ppo": _goal_ppo,
    "batched": _goal_batched_section,
    "lstm": _goal_lstm_section,
    "per-update": _goal_per_update_section,
    "cnn": _goal_cnn_section,
}


def _goal_budgets(args: argparse.Namespace) -> dict[str, int]:
    budget = {}
    for section, default in GOAL_BUDGETS.items():
        steps = args.steps if args.steps is not None else round(default * args.scale)
        unit = GOAL_ROUND[section]
        budget[section] = max(unit, -(-steps // unit) * unit)
    return budget


def _run_goals(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    budget = _goal_budgets(args)
    session = {
        "command": " ".join([".venv/bin/python", "benchmarks/speed.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pgrad_commit": _git("rev-parse", "--short", "HEAD")
        + (" + uncommitted changes" if _git("status", "--porcelain", "--", "pgrad") else ""),
        "versions": {**_versions(), **_versions_extra()},
        "cpus": os.cpu_count(),
        "budgets": budget,
        "repeats": args.repeats,
        "load1_at_start": os.getloadavg()[0],
    }
    rows: list[dict] = []
    notes: list[str] = []
    results = {}
    for section in args.sections:
        results[section] = GOAL_RUNNERS[section](budget, args, rows, notes)
    session["wall_s"] = time.perf_counter() - start
    session["load1_at_end"] = os.getloadavg()[0]

    v = session["versions"]
    print(
        f"\nissue 25 speed goals: pgrad {session['pgrad_commit']}, {session['date']}, medians of {args.repeats} "
        f"alternating repeats, {session['cpus']} cpus, load1 {session['load1_at_start']:.2f} at the start and "
        f"{session['load1_at_end']:.2f} at the end, {session['wall_s'] / 60:.1f} min in all"
    )
    print(", ".join(f"{name} {version}" for name, version in v.items()))
    print(f"pgrad's compiled rollout step: {_compiled_step_state()}")
    for note in notes:
        print(f"  {note}")
    print("\n| goal | measured | target | status |")
    print("|---|---|---|---|")
    for row in rows:
        sign = "<=" if row.get("at_most") else ">="
        if row["measured"] is None:
            print(f"| {row['goal']} | - | {sign} {row['target']:g} | {row['note']} |")
            continue
        met = row["measured"] <= row["target"] if row.get("at_most") else row["measured"] >= row["target"]
        print(f"| {row['goal']} | {row['measured']:.2f} | {sign} {row['target']:g} | {'met' if met else 'not met'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({**session, "goals": rows, "notes": notes, "results": results}, indent=2))


def _compiled_step_state() -> str:
    """Whether pgrad's runs act through the compiled step (pgrad/numpy_twin/compiled.py)."""
    if os.environ.get("PGRAD_NUMBA") == "0":
        return "off (PGRAD_NUMBA=0)"
    return "on" if importlib.util.find_spec("numba") is not None else "off (numba not installed)"


def _versions_extra() -> dict[str, str | None]:
    out = {}
    for name in ("sb3-contrib", "envpool", "minatar"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# -- the driver ---------------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("torch", "gymnasium", "mujoco", "numpy", "stable_baselines3", "numba"):
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _export(commit: str) -> tuple[tempfile.TemporaryDirectory, Path]:
    """``git archive COMMIT pgrad`` into a temporary directory, to be put first on PYTHONPATH."""
    folder = tempfile.TemporaryDirectory(prefix="pgrad_speed_src_")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "pgrad"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder.name], input=archive.stdout, check=True)
    return folder, Path(folder.name)


def _spawn(impl: str, case: str, args: argparse.Namespace, snapshot: Path | None, profiler: str | None = None) -> dict:
    """One run in a fresh process. ``base`` is pgrad from the ``--baseline`` snapshot."""
    worker = "parts" if args.parts else "pgrad" if impl == "base" else impl
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        worker,
        "--cases",
        case,
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        *sum((["--set", kv] for kv in args.set), []),
    ]
    if profiler:
        command += ["--profile", profiler]
    env = dict(os.environ)
    if snapshot is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(snapshot), env.get("PYTHONPATH")]))
    # A scratch working directory: MuJoCo appends its warnings to ./MUJOCO_LOG.TXT.
    with tempfile.TemporaryDirectory(prefix="pgrad_speed_") as scratch:
        done = subprocess.run(command, capture_output=True, text=True, cwd=scratch, env=env)
    if done.returncode != 0:
        sys.exit(f"{impl} {case} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    if profiler:
        print(done.stderr, file=sys.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(impl=impl, case=case, steps_per_s=result["steps_done"] / result["wall_s"])
    if snapshot is not None and worker in ("pgrad", "parts") and not result["pgrad_file"].startswith(str(snapshot)):
        sys.exit(f"--commit: the worker imported {result['pgrad_file']}, not the exported snapshot in {snapshot}")
    return result


def _parse_set(items: list[str]) -> dict:
    from pgrad.config import parse_set_args

    return parse_set_args(items)


def _summarise(runs: list[dict], impls: list[str]) -> dict:
    summary: dict = {}
    for impl in impls:
        mine = [r for r in runs if r["impl"] == impl]
        if mine:
            summary[impl] = {
                "median_steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                "all_steps_per_s": [round(r["steps_per_s"]) for r in mine],
                "recent_returns": [
                    None if r.get("recent_return") is None else round(r["recent_return"], 1) for r in mine
                ],
            }
    raw = summary.get("raw", {}).get("median_steps_per_s")
    for impl in ("pgrad", "sb3"):
        if impl in summary and raw:
            summary[impl]["overhead_factor"] = raw / summary[impl]["median_steps_per_s"]
    if "pgrad" in summary and "sb3" in summary:
        summary["pgrad_over_sb3"] = summary["pgrad"]["median_steps_per_s"] / summary["sb3"]["median_steps_per_s"]
    if "pgrad" in summary and "base" in summary:
        summary["pgrad_over_base"] = summary["pgrad"]["median_steps_per_s"] / summary["base"]["median_steps_per_s"]
    return summary


def _print_parts(args, session, impls, snapshot, base_snapshot) -> None:
    keys = ("collect_us_per_step", "update_ms_per_minibatch", "predict_us")
    print("| case | impl | rollout us/step | update ms/minibatch (PPO) or per update (A2C) | predict us | load1 |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        runs = []
        for repeat in range(args.repeats):
            for impl in impls if repeat % 2 == 0 else impls[::-1]:
                runs.append(_spawn(impl, case, args, base_snapshot if impl == "base" else snapshot))
        for impl in impls:
            mine = [r for r in runs if r["impl"] == impl]
            medians = [statistics.median(r[k] for r in mine) for k in keys]
            loads = [r["load1_before"] for r in mine]
            name = f"base ({session['baseline_commit']})" if impl == "base" else f"pgrad ({session['pgrad_commit']})"
            print(
                f"| {case} | {name} | {medians[0]:.0f} | {medians[1]:.3f} | {medians[2]:.0f} | "
                f"{min(loads):.1f}-{max(loads):.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="ALGO:ENV pairs (algos: ppo, a2c)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument(
        "--steps",
        type=int,
        help="env steps per run (default 40,960: 20 PPO rollouts of 2048); with --goals, every section's "
        "budget (rounded up to whole rollouts) instead of its default",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="pgrad-only override (repeatable)"
    )
    parser.add_argument("--no-sb3", action="store_true", help="skip SB3 even if it is importable")
    parser.add_argument("--json", metavar="PATH", help="also write every run and the summary to this JSON file")
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile one pgrad run per case (after an unprofiled one) instead of benchmarking",
    )
    parser.add_argument("--commit", help="benchmark this commit (git archive) instead of the working tree")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run pgrad at this commit ('base'), alternating with the rest"
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="time pgrad's parts (rollout per step, update per minibatch, predict) instead of whole runs",
    )
    goals = parser.add_argument_group("issue 25 goals (--goals)")
    goals.add_argument("--goals", action="store_true", help="run the speed goals' sections and print the goal table")
    goals.add_argument(
        "--sections", nargs="+", choices=GOAL_SECTIONS, default=list(GOAL_SECTIONS), help="a subset of the sections"
    )
    goals.add_argument(
        "--scale", type=float, default=1.0, help="multiply every section's default budget (2: twice the steps)"
    )
    goals.add_argument(
        "--per-update-baseline", metavar="REV", help="benchmarks/per_update_cost.py's --baseline (default: its own)"
    )
    parser.add_argument("--worker", choices=("pgrad", "sb3", "raw", "parts"), help=argparse.SUPPRESS)
    parser.add_argument("--goal-worker", choices=("pgrad", "sb3", *GOAL_WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.goal_worker:
        print(json.dumps(_goal_worker(args.goal_worker, json.loads(args.worker_args))))
        return
    if args.goals:
        clash = [
            flag
            for flag, value in [
                ("--commit", args.commit),
                ("--baseline", args.baseline),
                ("--parts", args.parts),
                ("--profile", args.profile),
                ("--set", args.set),
            ]
            if value
        ]
        if clash:
            parser.error(f"--goals measures the working tree with fixed settings; drop {', '.join(clash)}")
        _run_goals(args)
        return
    if args.steps is None:
        args.steps = 40_960
    for case in args.cases:
        algo, _, env_id = case.partition(":")
        if algo not in PGRAD_KWARGS or not env_id:
            parser.error(f"case {case!r}: expected ALGO:ENV with ALGO one of {', '.join(PGRAD_KWARGS)}")

    if args.worker:
        algo, _, env_id = args.cases[0].partition(":")
        if args.worker == "pgrad":
            result = _run_pgrad(algo, env_id, args.steps, args.seed, _parse_set(args.set), args.profile)
        elif args.worker == "parts":
            result = _run_parts(algo, env_id, args.seed, _parse_set(args.set))
        elif args.worker == "sb3":
            result = _run_sb3(algo, env_id, args.steps, args.seed)
        else:
            result = _run_raw(env_id, args.steps, args.seed)
        print(json.dumps(result))
        return

    snapshot_dir, snapshot = None, None
    if args.commit:
        commit = _git("rev-parse", "--short", args.commit)
        if not commit:
            sys.exit(f"--commit {args.commit}: not a commit of {REPO}")
        snapshot_dir, snapshot = _export(commit)
    else:
        commit = _git("rev-parse", "--short", "HEAD")
    uncommitted = [] if snapshot else _git("status", "--porcelain", "--", "pgrad").splitlines()
    session = {
        "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pgrad_commit": commit + (" + uncommitted changes" if uncommitted else ""),
        "versions": _versions(),
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "pgrad_overrides": args.set,
    }

    if args.profile:
        for case in args.cases:
            plain = _spawn("pgrad", case, args, snapshot)
            profiled = _spawn("pgrad", case, args, snapshot, profiler=args.profile)
            print(
                f"{case}: unprofiled {plain['steps_per_s']:.0f} steps/s ({plain['wall_s']:.2f} s); "
                f"profiled ({args.profile}) {profiled['steps_per_s']:.0f} steps/s ({profiled['wall_s']:.2f} s)"
            )
        return

    impls = ["pgrad", "raw"]
    if args.parts:
        impls = ["pgrad"]
    elif not args.no_sb3 and importlib.util.find_spec("stable_baselines3") is not None:
        impls.insert(1, "sb3")
    base_dir, base_snapshot = None, None
    if args.baseline:
        session["baseline_commit"] = _git("rev-parse", "--short", args.baseline)
        if not session["baseline_commit"]:
            sys.exit(f"--baseline {args.baseline}: not a commit of {REPO}")
        base_dir, base_snapshot = _export(session["baseline_commit"])
        impls.insert(1, "base")
    results: dict = {}
    if args.parts:
        _print_parts(args, session, impls, snapshot, base_snapshot)
        return
    for case in args.cases:
        runs: list[dict] = []
        for repeat in range(args.repeats):
            order = impls if repeat % 2 == 0 else impls[::-1]
            for impl in order:
                run = _spawn(impl, case, args, base_snapshot if impl == "base" else snapshot)
                run["repeat"] = repeat
                runs.append(run)
                print(
                    f"{case:<22} repeat {repeat} {impl:<5} {run['steps_per_s']:8.0f} steps/s  wall "
                    f"{run['wall_s']:6.2f} s  "
                    f"load1 {run['load1_before']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
        results[case] = {"runs": runs, "summary": _summarise(runs, impls)}

    print(
        f"\npgrad {session['pgrad_commit']}, {args.steps:,} steps per run, medians of {args.repeats} alternating "
        f"repeats, {session['date']}"
    )
    v = session["versions"]
    print(
        f"torch {v['torch']}, gymnasium {v['gymnasium']}, mujoco {v['mujoco']}, numpy {v['numpy']}, "
        f"SB3 {v['stable_baselines3']}, python {v['python']}, {session['cpus']} cpus"
    )
    if args.baseline:
        print(f"baseline ('base'): pgrad at {session['baseline_commit']}")
        for case, result in results.items():
            s = result["summary"]
            print(
                f"  {case}: pgrad {s['pgrad']['median_steps_per_s']:,.0f} steps/s, base "
                f"{s['base']['median_steps_per_s']:,.0f}"
                f" steps/s, pgrad / base {s['pgrad_over_base']:.2f}"
            )
    print(
        "| case | pgrad steps/s | SB3 steps/s | pgrad / SB3 | raw env steps/s | overhead pgrad | overhead SB3 | load1 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case, result in results.items():
        s, runs = result["summary"], result["runs"]
        loads = [r["load1_before"] for r in runs]
        sb3 = s.get("sb3", {})
        print(
            f"| {case} | {s['pgrad']['median_steps_per_s']:,.0f} | {sb3['median_steps_per_s']:,.0f} | "
            if sb3
            else f"| {case} | {s['pgrad']['median_steps_per_s']:,.0f} | - | ",
            end="",
        )
        print(f"{s['pgrad_over_sb3']:.2f} | " if "pgrad_over_sb3" in s else "- | ", end="")
        print(
            f"{s['raw']['median_steps_per_s']:,.0f} | {s['pgrad']['overhead_factor']:.1f} | "
            + (f"{sb3['overhead_factor']:.1f} | " if sb3 else "- | ")
            + f"{min(loads):.1f}-{max(loads):.1f} |"
        )
    print("\nper run (steps/s) and mean return of recent training episodes:")
    for case, result in results.items():
        for impl in impls:
            s = result["summary"][impl]
            returns = f"  returns {s['recent_returns']}" if impl != "raw" else ""
            print(f"  {case:<22} {impl:<5} {s['all_steps_per_s']}{returns}")
    if args.json:
        Path(args.json).write_text(json.dumps({**session, "results": results}, indent=2))


if __name__ == "__main__":
    main()
