"""Keeps one known-harmless MuJoCo message out of users' output while an env is being built.

MuJoCo 4.0 deprecated the ``<compiler settotalmass=...>`` XML attribute that Gymnasium's
HalfCheetah (and other v5 models) still use, so every model load prints

    WARNING: compiler attribute 'settotalmass' is deprecated and will be removed in a future
    release: scale the masses and densities in the model, or call mj_setTotalmass ...

It comes from MuJoCo's C function ``mju_warning``, not from Python's ``warnings``: with no user
handler installed, the default handler ``printf``s it to the C-level stdout (so
``warnings.filterwarnings`` and redirecting ``sys.stdout`` cannot stop it) and appends it to
``MUJOCO_LOG.TXT`` in the working directory. The model still compiles with the requested total
mass, so the message tells users nothing they can act on; it is Gymnasium's XML to update.

The Python bindings expose the hook MuJoCo provides for this, ``mujoco.set_mju_user_warning``
(the global ``mju_user_warning`` callback, MuJoCo API reference, "Globals > Error callbacks":
when set, it replaces the default processing). ``filtered_mujoco_warnings``
installs a handler that drops exactly that message and passes every other one on, to the
handler that was installed before, or the way MuJoCo's default does (stdout and the log file),
and puts the previous handler back on exit. Because it wraps env construction inside
``make_env``, it also runs in AsyncVectorEnv worker processes, which call ``make_env`` there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator

# Each entry is the start of a MuJoCo warning known to be harmless when loading Gymnasium models.
HARMLESS_WARNING_PREFIXES = ("compiler attribute 'settotalmass' is deprecated",)


@contextlib.contextmanager
def filtered_mujoco_warnings(import_if_missing: bool = True) -> Iterator[None]:
    """Within the block, MuJoCo warnings starting with a ``HARMLESS_WARNING_PREFIXES`` entry are dropped.

    Args:
        import_if_missing: import ``mujoco`` if it is installed but not imported yet. Pass False
            for envs known not to use MuJoCo, to spare them the ~0.1 s import.
    """
    mujoco = sys.modules.get("mujoco")
    if mujoco is None and import_if_missing and importlib.util.find_spec("mujoco") is not None:
        import mujoco
    if mujoco is None or not hasattr(mujoco, "set_mju_user_warning"):
        yield
        return

    previous_handler = mujoco.get_mju_user_warning()

    def drop_harmless_warnings(message: str) -> None:
        if message.startswith(HARMLESS_WARNING_PREFIXES):
            return
        if previous_handler is not None:
            previous_handler(message)
        else:
            _emit_like_mujoco_default(mujoco, message)

    mujoco.set_mju_user_warning(drop_harmless_warnings)
    try:
        yield
    finally:
        # If two threads build envs at once the restore order can interleave and leave one of
        # these handlers installed; that is benign, since it forwards everything else.
        mujoco.set_mju_user_warning(previous_handler)


def _emit_like_mujoco_default(mujoco, message: str) -> None:
    """What MuJoCo does with a warning when no user handler is set: log file, then stdout."""
    mujoco.mju_writeLog("WARNING", message)
    sys.stdout.write(f"WARNING: {message}\n\n")
    sys.stdout.flush()
