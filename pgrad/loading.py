"""``pgrad.load``: rebuild the right algorithm class from a saved run or policy file."""

from __future__ import annotations

import os

from pgrad.algos import ALGORITHMS
from pgrad.algos.base import Algorithm
from pgrad.errors import PolicyFileError
from pgrad.io import load_policy


def load(path: str | os.PathLike, custom_objects: dict[str, type] | None = None) -> Algorithm:
    """Load a run folder, ``policy.json`` or ``policy.safetensors`` into an agent that can predict.

    Only safetensors and JSON are read; nothing is unpickled, and nothing is imported because the
    file names it: a policy with a custom encoder needs its class passed in ``custom_objects``
    (``{"MyEncoder": MyEncoder}``). A missing, truncated or altered file, or a class not passed,
    raises :class:`pgrad.errors.PolicyFileError` with a one-line reason.
    """
    description, state_dict = load_policy(path)
    algo = description.get("algo")
    if algo not in ALGORITHMS:
        raise PolicyFileError(
            f"policy at {path} was saved by unknown algorithm {algo!r}; known: {', '.join(ALGORITHMS)}"
        )
    return ALGORITHMS[algo].from_policy_file(description, state_dict, custom_objects)
