"""``pgrad tune``: Optuna hyperparameter search with pruning, resumable, locally or on Ray.

Every trial trains one agent (the same seed for all trials, so they differ only in their
hyperparameters) for the same step budget, evaluating it deterministically ``evaluations``
times along the way. Each evaluation is reported to Optuna's median pruner, which stops a trial
whose evaluation return is below the median of earlier trials at the same step (Golovin et al.
2017, "Google Vizier", sec. 3.2.2: median stopping rule). The trial's value is its last
evaluation return.

The study lives in ``OUT/study.db`` (SQLite). Running the same command again resumes it: trials
already finished count towards ``--trials``, and trials a killed process left running are marked
failed and their parameters run again. The best trial's hyperparameters are written to
``OUT/best_preset.toml`` in the format of ``pgrad/presets/*.toml``, for
``pgrad train ALGO ENV --preset OUT/best_preset.toml``.

Search spaces, one per algorithm, are in :data:`SEARCH_SPACES` (documented in the README);
``register_space(algo, fn)`` adds one. Optuna and Ray are optional and imported lazily.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, TrainingError

GAMMAS = [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]
LAMBDAS = [0.8, 0.9, 0.92, 0.95, 0.98, 1.0]


def ppo_space(trial: Any) -> dict[str, Any]:
    """PPO: the ranges of RL Zoo's PPO sampler (rl_zoo3/hyperparams_opt.py), narrowed to what runs on a CPU."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
        "n_steps": trial.suggest_categorical("n_steps", [16, 32, 64, 128, 256, 512, 1024, 2048]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "n_epochs": trial.suggest_categorical("n_epochs", [3, 5, 10, 20]),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "gae_lambda": trial.suggest_categorical("gae_lambda", LAMBDAS),
        "clip_coef": trial.suggest_categorical("clip_coef", [0.1, 0.2, 0.3]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [0.3, 0.5, 1.0, 2.0, 5.0]),
    }


def a2c_space(trial: Any) -> dict[str, Any]:
    """A2C: learning rate, rollout length, discounting, entropy and value weights, clipping."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "n_steps": trial.suggest_categorical("n_steps", [5, 8, 16, 32, 64, 128]),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "gae_lambda": trial.suggest_categorical("gae_lambda", LAMBDAS),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.25, 1.0),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [0.3, 0.5, 1.0, 2.0, 5.0]),
        "normalize_advantage": trial.suggest_categorical("normalize_advantage", [False, True]),
    }


def reinforce_space(trial: Any) -> dict[str, Any]:
    """REINFORCE: step size, episodes per update, discount, return normalisation, entropy."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "episodes_per_update": trial.suggest_categorical("episodes_per_update", [1, 2, 4, 8]),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "normalize_returns": trial.suggest_categorical("normalize_returns", [False, True]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
    }


def reinforce_baseline_space(trial: Any) -> dict[str, Any]:
    """REINFORCE with baseline: REINFORCE's space plus the baseline's step size and steps per update."""
    return {
        **reinforce_space(trial),
        "value_lr": trial.suggest_float("value_lr", 1e-4, 1e-2, log=True),
        "value_steps": trial.suggest_categorical("value_steps", [1, 5, 20, 80]),
    }


def actor_critic_space(trial: Any) -> dict[str, Any]:
    """One-step actor-critic: the two step sizes, discount, entropy, gradient clipping."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "value_lr": trial.suggest_float("value_lr", 1e-5, 1e-2, log=True),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [0.5, 1.0, 5.0, None]),
    }


def ars_space(trial: Any) -> dict[str, Any]:
    """ARS: directions per iteration, how many of them update, step size, exploration noise.

    The RL Zoo's ARS sampler (rl_zoo3/hyperparams_opt.py) without its zero-policy switch (pgrad's
    linear policy always starts at zero, as the paper's). Its noise values are kept; its step size
    range (1e-5..1) is narrowed to 1e-3..0.3: the update divides by the std of the rollout
    rewards, so its scale does not follow the env's reward scale, and the paper's tuned values
    are 0.01-0.03 (Table 9).
    ``n_top`` is capped at ``n_directions`` (:func:`trial_overrides`).
    """
    return {
        "n_directions": trial.suggest_categorical("n_directions", [4, 8, 16, 32, 64]),
        "n_top": trial.suggest_categorical("n_top", [1, 2, 4, 8, 16, 32, 64]),
        "lr": trial.suggest_float("lr", 1e-3, 0.3, log=True),
        "noise_std": trial.suggest_categorical("noise_std", [0.01, 0.02, 0.025, 0.03, 0.05, 0.1, 0.2, 0.3]),
    }


SEARCH_SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "ppo": ppo_space,
    "a2c": a2c_space,
    "reinforce": reinforce_space,
    "reinforce-baseline": reinforce_baseline_space,
    "actor-critic": actor_critic_space,
    "ars": ars_space,
}


def register_space(algo: str, space: Callable[[Any], dict[str, Any]]) -> None:
    """Add or replace the search space of ``algo``: a function of an Optuna trial returning overrides."""
    SEARCH_SPACES[algo] = space


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("pgrad tune needs Optuna: pip install 'pgrad[tune]'") from None
    return optuna


@dataclass(frozen=True)
class TuneSpec:
    """One study: what every trial trains and how it is judged."""

    algo: str
    env: str
    out: str
    trials: int
    steps: int
    seed: int = 0
    preset: str | None = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # every trial's env options (--env-kwarg)
    wrappers: tuple[str, ...] = ()  # and wrappers (--wrapper)
    evaluations: int = 4  # evaluations per trial (the pruner sees each)
    eval_episodes: int = 5
    command: str = ""  # recorded in the preset's source

    @property
    def study_name(self) -> str:
        return f"{self.algo}-{self.env}"

    @property
    def storage(self) -> str:
        return f"sqlite:///{(Path(self.out) / 'study.db').resolve()}"


def trial_overrides(spec: TuneSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The trial's hyperparameters: --set values, then the sampled ones (sampled win)."""
    overrides = {**spec.overrides, **params}
    # PPO's minibatch cannot exceed its rollout; shrink it rather than waste the trial.
    if "batch_size" in params and "n_steps" in params:
        n_envs = int(overrides.get("n_envs", _preset_or_default(spec, "n_envs")))
        overrides["batch_size"] = min(int(params["batch_size"]), int(params["n_steps"]) * n_envs)
    # ARS updates with at most its N directions (the "-t" variants keep the best b <= N).
    if "n_top" in params and "n_directions" in params:
        overrides["n_top"] = min(int(params["n_top"]), int(params["n_directions"]))
    return overrides


def resolved_values(spec: TuneSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Every hyperparameter the trial set (starting preset, --set, sampled), typed as the config has them."""
    from pgrad.algos import ALGORITHM_ARGUMENTS, ALGORITHMS
    from pgrad.config import resolve_preset

    _, preset_values = resolve_preset(spec.algo, spec.env, None if spec.preset == "auto" else spec.preset)
    values = {**preset_values, **trial_overrides(spec, params)}
    config = ALGORITHMS[spec.algo].Config.build({**values, **ALGORITHM_ARGUMENTS.get(spec.algo, {})})
    return {key: getattr(config, key) for key in values}


def _preset_or_default(spec: TuneSpec, key: str) -> Any:
    from pgrad.algos import ALGORITHMS
    from pgrad.config import resolve_preset

    _, values = resolve_preset(spec.algo, spec.env, None if spec.preset == "auto" else spec.preset)
    return values.get(key, getattr(ALGORITHMS[spec.algo].Config(), key))


def run_trial(
    spec: TuneSpec, number: int, params: dict[str, Any], report: Callable[[int, float], bool]
) -> dict[str, Any]:
    """Train one trial into ``OUT/trial_<number>``; ``report(step, value)`` returns True to prune.

    Returns ``{"state": "complete", "value": x}``, ``{"state": "pruned", "value": x}`` or
    ``{"state": "fail", "error": ...}``. Runs in the driver (local) or in a Ray task.
    """
    import torch

    from pgrad.early_stopping import EarlyStopping
    from pgrad.experiments.runner import TrainSpec, build_agent

    torch.set_num_threads(1)
    pruned = []

    def listener(step: int, value: float) -> bool:
        if report(step, value):
            pruned.append(step)
            return False
        return True

    train_spec = TrainSpec(
        algo=spec.algo,
        env=spec.env,
        seed=spec.seed,
        out="",
        preset=spec.preset,
        overrides=trial_overrides(spec, params),
        env_kwargs=spec.env_kwargs,
        wrappers=spec.wrappers,
    )
    try:
        agent = build_agent(train_spec)
    except ConfigError as exc:
        return {"state": "fail", "error": str(exc)}
    early = EarlyStopping(
        eval_every=max(1, spec.steps // spec.evaluations), episodes=spec.eval_episodes, listener=listener
    )
    try:
        agent.learn(spec.steps, run_dir=Path(spec.out) / f"trial_{number}", quiet=True, early_stopping=early)
    except TrainingError as exc:
        return {"state": "fail", "error": str(exc)}
    finally:
        agent.close()
    if not early.history:
        return {"state": "fail", "error": "no evaluation happened (budget smaller than one iteration?)"}
    value = early.history[-1]["mean_return"]
    return {"state": "pruned" if pruned else "complete", "value": value, "steps": agent.total_steps}


def _load_study(spec: TuneSpec):
    optuna = import_optuna()
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=spec.storage,
        direction="maximize",
        load_if_exists=True,
        # A trial is pruned once it falls below the median of earlier trials at the same step;
        # the first 3 trials and each trial's first evaluation are never pruned.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, spec.steps // spec.evaluations)),
    )
    # The sampler's generator is not stored with the study: seeded with spec.seed again on a
    # resume, TPE's random start-up draws would repeat the first trials' parameters exactly. Seeded
    # with seed + trials so far, a resumed study draws new points (reproducibly for the same
    # sequence of commands, though not the points an uninterrupted study would have drawn).
    study.sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.get_trials(deepcopy=False)))
    return study


def _recover(study) -> int:
    """Fail trials a killed run left RUNNING and queue their parameters again; return trials done."""
    from optuna.trial import TrialState

    done = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            done += 1
        elif trial.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            study.enqueue_trial(trial.params, skip_if_exists=False)
    return done


def _tell(study, trial, outcome: dict[str, Any]) -> None:
    from optuna.trial import TrialState

    if outcome["state"] == "complete":
        study.tell(trial, outcome["value"])
    elif outcome["state"] == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("error", outcome["error"])
        study.tell(trial, state=TrialState.FAIL)


def tune(
    spec: TuneSpec, backend: str = "local", workers: int | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the study to ``spec.trials`` finished trials, write the best preset; return a summary."""
    if spec.algo not in SEARCH_SPACES:
        raise ConfigError(
            f"no search space for {spec.algo!r}; available: {', '.join(SEARCH_SPACES)} (register_space adds one)"
        )
    study = _load_study(spec)
    done = _recover(study)
    remaining = max(0, spec.trials - done)
    if done:
        log(f"study {spec.study_name} in {spec.storage[10:]}: {done} trials already finished, {remaining} to go")
    if remaining:
        run = _run_ray if backend == "ray" else _run_local
        run(spec, study, remaining, workers, log)
    return write_best(spec, study)


def _run_local(spec: TuneSpec, study, n_trials: int, workers: int | None, log: Callable[[str], None]) -> None:
    for _ in range(n_trials):
        trial = study.ask()
        params = SEARCH_SPACES[spec.algo](trial)

        def report(step: int, value: float, trial=trial) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        outcome = run_trial(spec, trial.number, params, report)
        _tell(study, trial, outcome)
        log(_outcome_line(trial.number, outcome))


class _PruningService:
    """Ray actor on the driver's node: trials report evaluations to the study through it."""

    def __init__(self, spec: TuneSpec) -> None:
        self.study = _load_study(spec)

    def report(self, trial_id: int, step: int, value: float) -> bool:
        import optuna

        trial = optuna.trial.Trial(self.study, trial_id)
        trial.report(value, step)
        return trial.should_prune()


def _ray_trial(spec: TuneSpec, number: int, trial_id: int, params: dict[str, Any], service: Any) -> dict[str, Any]:
    import ray

    return run_trial(spec, number, params, lambda step, value: ray.get(service.report.remote(trial_id, step, value)))


def _run_ray(spec: TuneSpec, study, n_trials: int, workers: int | None, log: Callable[[str], None]) -> None:
    from dataclasses import replace

    from pgrad.experiments.runner import import_ray, init_ray, ray_completed

    spec = replace(spec, out=str(Path(spec.out).resolve()))  # a Ray worker's working directory is not ours
    ray = import_ray()
    init_ray(ray)
    node = ray.get_runtime_context().get_node_id()
    # The service shares study.db with this process, so it must run on this machine.
    service = (
        ray.remote(num_cpus=0)(_PruningService)
        .options(scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node, soft=False))
        .remote(spec)
    )
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_trial)
    to_ask = iter(range(n_trials))

    def submit():
        if next(to_ask, None) is None:
            return None
        trial = study.ask()
        params = SEARCH_SPACES[spec.algo](trial)
        return trial, task.remote(spec, trial.number, trial._trial_id, params, service)

    limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    for trial, outcome in ray_completed(submit, limit, lambda reason: {"state": "fail", "error": reason}):
        _tell(study, trial, outcome)
        log(_outcome_line(trial.number, outcome))


def _outcome_line(number: int, outcome: dict[str, Any]) -> str:
    if outcome["state"] == "fail":
        return f"trial {number}: failed: {outcome['error']}"
    return f"trial {number}: {outcome['state']}, evaluation return {outcome['value']:.2f}"


# -- the best trial as a preset ------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (env_kwargs, a wrapper)
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a TOML basic string


def write_best(spec: TuneSpec, study) -> dict[str, Any]:
    """Write ``OUT/best_preset.toml`` from the best complete trial; return the study summary."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {
        s.name.lower(): sum(t.state == s for t in trials)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    summary: dict[str, Any] = {"study": spec.study_name, "storage": spec.storage, "trials": counts, "best": None}
    if not counts["complete"]:
        return summary
    best = study.best_trial
    values = resolved_values(spec, best.params)
    source = (
        f"pgrad tune: study {spec.study_name!r} in {Path(spec.out) / 'study.db'}, best of {counts['complete']} "
        "complete "
        f"trials: trial {best.number}, evaluation return {best.value:.2f} after {spec.steps} steps (seed {spec.seed}, "
        f"{spec.eval_episodes} deterministic episodes); {time.strftime('%Y-%m-%d')}; command: {spec.command}"
    )
    lines = [
        f"# Written by pgrad tune; use with: pgrad train {spec.algo} {spec.env} --preset "
        f"{Path(spec.out) / 'best_preset.toml'}",
        "",
        f"[{json.dumps(spec.env)}]",
        f"source = {_toml_value(source)}",
        f"algo = {_toml_value(spec.algo)}",
        f"steps = {spec.steps}",
    ]
    # TOML has no null; optional fields read the string "none" as None.
    lines += [f"{key} = {_toml_value('none' if value is None else value)}" for key, value in values.items()]
    if spec.env_kwargs:  # the env the study trained on, so that the preset reproduces it
        lines.append(f"env_kwargs = {_toml_value(spec.env_kwargs)}")
    if spec.wrappers:
        from pgrad.envs.options import parse_wrappers

        lines.append(f"wrappers = {_toml_value([w.to_json() for w in parse_wrappers(spec.wrappers)])}")
    from pgrad.io import atomic_write_text

    path = Path(spec.out) / "best_preset.toml"
    atomic_write_text(path, "\n".join(lines) + "\n")
    summary["best"] = {"trial": best.number, "value": best.value, "params": best.params, "preset": str(path)}
    return summary


def default_out(algo: str, env: str) -> Path:
    return Path("runs") / f"tune-{algo}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', env)}"


__all__ = ["SEARCH_SPACES", "TuneSpec", "register_space", "tune", "run_trial", "write_best", "default_out"]
