"""Exceptions pgrad raises on purpose, each mapped to an exit status by the CLI.

Input and usage problems (exit status 2) derive from ``ConfigError``; problems that appear while
training (exit status 1) derive from ``TrainingError``. Every message is one line that says what
is wrong and what would be accepted.
"""


class PgradError(Exception):
    """Base class of every error pgrad raises deliberately."""


class ConfigError(PgradError, ValueError):
    """Bad user input: an unknown name, a value out of range, an unsupported space."""


class UnsupportedSpaceError(ConfigError):
    """An observation or action space an algorithm or distribution cannot handle."""


class PolicyFileError(ConfigError):
    """A saved policy or checkpoint that is missing, corrupted or of an unknown format."""


class TrainingError(PgradError, RuntimeError):
    """A failure during training (for example an env returning NaN); the last checkpoint is kept."""


class NonFiniteError(TrainingError):
    """An environment or the optimisation produced NaN or inf."""


class EnvError(TrainingError):
    """The environment raised in ``reset`` or ``step`` (``env_index``: which copy, where known)."""

    def __init__(self, message: str, env_index: int | None = None) -> None:
        super().__init__(message)
        self.env_index = env_index


class Interrupted(PgradError):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint; resume with ``--resume``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
