"""``pgrad.load``: rebuild the right algorithm class from a saved run, policy file or checkpoint.

Without ``env`` the agent acts only (``predict``, ``pgrad.evaluate``, export). With ``env`` it is a
new agent on that env that starts from the saved weights and normaliser statistics (and, from a
checkpoint, the optimiser state) and trains with ``learn``: fine-tuning, or moving a policy to a
harder env. That is not a resume: step counters, learning-rate schedule, generators and env
states start afresh (``pgrad train --resume`` continues a run exactly).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium
import torch

from pgrad.algos import ALGORITHM_ARGUMENTS, ALGORITHMS
from pgrad.algos.base import Algorithm, saved_encoder
from pgrad.envs.options import parse_wrappers, recorded_env
from pgrad.errors import ConfigError, PolicyFileError
from pgrad.io import (
    check_policy_size,
    load_checkpoint,
    load_policy,
    optimizer_from_tensors,
    space_from_json,
    space_to_json,
)


def load(
    path: str | os.PathLike,
    env: Any = None,
    *,
    custom_objects: dict[str, type] | None = None,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[Any] | None = None,
    **hyperparameters: Any,
) -> Algorithm:
    """Load a run folder, ``policy.json``/``policy.safetensors`` or a checkpoint folder.

    Only safetensors and JSON are read; nothing is unpickled, and nothing is imported because the
    file names it: a policy with a custom encoder needs its class passed in ``custom_objects``
    (``{"MyEncoder": MyEncoder}``), and a wrapper the run used from a module other than
    Gymnasium's or pgrad's must be given again in ``wrappers``.

    Args:
        path: a run folder (its final ``policy.*``, or its ``checkpoint/`` while it has none), a
            policy file, or a checkpoint folder (``RUN/checkpoint``).
        env: None for an agent that acts only; an env (id, callable, instance) for an agent that
            trains from the saved state (see the module docstring).
        custom_objects: the classes the policy names (a custom encoder), by name.
        seed: with ``env``: the new run's seed (default: the saved run's).
        env_kwargs: the env's constructor keywords (default: the saved run's when ``env`` is
            its env id, else none); they also apply when acting only.
        wrappers: the env's wrappers (default: the saved run's when ``env`` is its env id).
        **hyperparameters: with ``env``: config fields that replace the saved ones (``lr=1e-4``).

    Raises:
        PolicyFileError: a missing, truncated or altered file, or a class not passed.
        ConfigError: a policy whose spaces do not fit ``env``, or options without ``env``.
    """
    description, state_dict, optimizer_state = read_saved(path)
    algo = description.get("algo")
    if algo not in ALGORITHMS:
        raise PolicyFileError(f"{path} was saved by unknown algorithm {algo!r}; known: {', '.join(ALGORITHMS)}")
    if env is None:
        if seed is not None or hyperparameters:
            raise ConfigError("seed and hyperparameters apply to training: pass env= to load a trainable agent")
        agent = ALGORITHMS[algo].from_policy_file(description, state_dict, custom_objects)
        agent.env = recorded_env(description, env_kwargs, parse_wrappers(wrappers))
        return agent
    return start_from(
        path, description, state_dict, optimizer_state, env, custom_objects, seed, env_kwargs, wrappers, hyperparameters
    )


def read_saved(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor], tuple | None]:
    """``(description, policy state_dict, (checkpoint state, tensors) or None)`` of what ``path``
    holds: a policy, or a checkpoint (whose description is its state.json)."""
    path = Path(path)
    if path.is_dir() and not (path / "state.json").is_file() and not (path / "policy.json").is_file():
        if (path / "checkpoint" / "state.json").is_file():
            path = path / "checkpoint"  # a run that has not finished: its latest checkpoint
    if path.is_dir() and (path / "state.json").is_file():
        state, tensors = load_checkpoint(path)
        policy_state = {k[len("policy.") :]: v for k, v in tensors.items() if k.startswith("policy.")}
        return state, policy_state, (state, tensors)
    description, state_dict = load_policy(path)
    return description, state_dict, None


def start_from(
    path: str | os.PathLike,
    description: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    optimizer_state: tuple | None,
    env: Any,
    custom_objects: dict[str, type] | None,
    seed: int | None,
    env_kwargs: dict[str, Any] | None,
    wrappers: list[Any] | None,
    hyperparameters: dict[str, Any],
) -> Algorithm:
    """A new agent on ``env`` with the saved config (``hyperparameters`` on top), weights and
    normaliser statistics, and the optimiser state when there is one; records ``init_from``."""
    check_policy_size(description, state_dict, path)  # before building anything
    algo = description["algo"]
    cls = ALGORITHMS[algo]
    encoder_class, encoder_kwargs = saved_encoder(description, custom_objects)
    same_env = isinstance(env, str) and env.strip() == description.get("env")
    if same_env and env_kwargs is None and wrappers is None:  # the same env as it was built
        env = recorded_env(description, None, ())
    saved = cls.Config.saved_values(description.get("config", {}))
    fixed = ALGORITHM_ARGUMENTS.get(algo, {})
    agent = cls(
        env,
        seed=description.get("seed", 0) if seed is None else seed,
        preset="none",  # the saved config is complete; a preset would only hide what it was
        encoder=encoder_class,
        encoder_kwargs=encoder_kwargs,
        env_kwargs=env_kwargs,
        wrappers=wrappers,
        **{**saved, **fixed, **hyperparameters},
    )
    try:
        check_spaces_fit(path, description, agent)
        agent.policy.load_state_dict(fit_per_env_buffers(state_dict, agent.policy.state_dict()))
        if optimizer_state is not None:
            state, tensors = optimizer_state
            for name, optimizer in agent.optimizers().items():
                if name in state.get("optimizers", {}):
                    chosen = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
                    optimizer_from_tensors(optimizer, tensors, state["optimizers"][name], prefix=f"optimizer.{name}.")
                    for group, values in zip(optimizer.param_groups, chosen):  # this run's lr and other settings
                        group.update(values)
    except RuntimeError as exc:
        agent.close()
        first_line = str(exc).strip().splitlines()[0]
        message = f"the policy at {path} does not fit the new agent (network shape changed?): {first_line}"
        raise ConfigError(message) from None
    except (ConfigError, PolicyFileError):
        agent.close()
        raise
    if hasattr(agent, "learner_from_policy"):
        agent.learner_from_policy()
    agent.init_from = {
        "path": str(Path(path).resolve()),
        "kind": "checkpoint" if optimizer_state is not None else "policy",
        "algo": algo,
        "env": description.get("env"),
        "sha256": description.get("sha256"),
    }
    return agent


def check_spaces_fit(path: Any, description: dict[str, Any], agent: Algorithm) -> None:
    """ConfigError unless the saved policy's observation and action spaces are the agent's env's."""
    for key in ("observation_space", "action_space"):
        saved = description.get(key)
        if saved is not None and saved != space_to_json(getattr(agent, key)):
            raise ConfigError(
                f"the policy at {path} was trained on {key.replace('_', ' ')} {short(space_from_json(saved))}, "
                f"but {agent.env_id} has {short(getattr(agent, key))}; start from a policy of an env with these spaces"
            )


def short(space: Any) -> str:
    """A space in a few words (a Box's bounds can fill a screen)."""
    if isinstance(space, gymnasium.spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    return str(space)


def fit_per_env_buffers(saved: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``saved`` with the reward scaler's running discounted return (one entry per env, for the
    episodes running when it was saved) taken from ``fresh``: the new run starts new episodes, and
    may have another number of envs. The return statistics it feeds are kept."""
    restart = {name for name in saved if name.endswith("discounted_return") and name in fresh}
    return {name: fresh[name] if name in restart else tensor for name, tensor in saved.items()}
