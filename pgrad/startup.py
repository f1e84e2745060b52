"""Start-up costs that pgrad's own processes (the CLI and the worker processes it spawns) avoid.

Not applied on ``import pgrad``: what is done here changes torch for the whole process, and a
user's process may do things pgrad's never do (compile code, say).
"""

from __future__ import annotations

import sys


def skip_optimizer_dynamo_import() -> None:
    """Let ``torch.optim.Optimizer``'s methods run without importing ``torch._dynamo``.

    torch wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` in
    ``torch._disable_dynamo``, which marks them "never compile". Its wrapper imports
    ``torch._dynamo`` on the first call, only to build that marked version, and caches it as the
    function's ``__dynamo_disable`` attribute. Outside ``torch.compile`` the marked version does
    exactly what the plain function does, and pgrad compiles nothing. The import is not cheap: it
    took 1.2-1.4 s of a fresh process here (constructing one ``torch.optim.Adam``), a fifth of
    ``pgrad train ppo CartPole-v1``'s whole wall time (6.5-8.2 s -> 5.5-7.0 s, 4 runs each,
    alternating, BENCHMARKS.md). So pgrad's processes put the plain function in that cache.

    torch's own ``Optimizer.step`` imports ``torch._dynamo`` all the same (for a graph break), so the
    saving is real where every update steps in numpy (PPO, A2C: :mod:`pgrad.numpy_twin`) or where
    no optimizer exists (ARS). Does nothing if ``torch._dynamo`` is already imported or if torch's
    wrappers no longer look as described.
    """
    if "torch._dynamo" in sys.modules:
        return
    import torch

    for attribute in vars(torch.optim.Optimizer).values():
        plain = getattr(attribute, "__wrapped__", None)
        code = getattr(attribute, "__code__", None)
        if plain is None or code is None or code.co_name != "inner" or not code.co_filename.endswith("_compile.py"):
            continue
        if getattr(plain, "__dynamo_disable", None) is None:
            setattr(plain, "__dynamo_disable", plain)
