"""Experiment tracking to Weights & Biases or MLflow, as a :class:`pgrad.callbacks.Callback`.

::

    tracker = TrackingCallback("wandb")  # or "mlflow"
    agent.learn(100_000, run_dir="runs/ppo-cartpole", callback=[tracker])
    tracker.log_final(agent.summary(evaluation))  # optional: the final evaluation as summary metrics
    tracker.finish()

What is logged: the run's config (``agent.describe_run()`` flattened: ``algo``, ``env``, ``seed``,
``config.lr``, ``versions.torch``, ...) once at the start; every finite number of each update's
metrics row (the row of metrics.csv: ``episode_return_mean``, ``sps``, ``policy_loss``, ...) at
step ``row["step"]`` (environment steps); :meth:`TrackingCallback.log_final`'s numbers as summary
metrics. The run stays open across ``learn`` calls (training may go on in Python); it ends with
:meth:`TrackingCallback.finish` (or the ``with`` block). The packages are optional extras:
``pip install 'pgrad[wandb]'`` / ``pip install 'pgrad[mlflow]'``.

Nothing here chooses online or offline: each package's own environment variables decide.

Weights & Biases. ``WANDB_MODE=offline`` writes the run to ``RUN_DIR/wandb/offline-run-*/`` (the
``.wandb`` file holds config, history and summary) without network or login; upload it later with
``wandb sync RUN_DIR/wandb/offline-run-*``. ``WANDB_MODE=disabled`` turns tracking into no-ops.
Online (the default) needs ``wandb login`` or ``WANDB_API_KEY``; without them the run does not
start (a ConfigError that suggests ``WANDB_MODE=offline``).
With a ``run_dir`` the wandb files go inside the run folder (``RUN_DIR/wandb/``); without one,
wherever ``WANDB_DIR`` says (default ``./wandb``). The project is ``project``, else
``$WANDB_PROJECT``, else ``"pgrad"``. Each tracker makes its own run (``reinit="create_new"``),
so a run you started yourself with ``wandb.init`` is left alone; the tracker's run is
``tracker.run``.

MLflow. Runs go where ``MLFLOW_TRACKING_URI`` points. Unset, MLflow 3.7 and later use
``sqlite:///mlflow.db`` in the current directory (unless ``./mlruns`` already holds experiments):
a local store, no server and no network. To choose the file: ``MLFLOW_TRACKING_URI=sqlite:///mlflow.db``
(relative to the current directory) or ``sqlite:////absolute/path/mlflow.db``. The old folder
store (``file:./mlruns``) is in maintenance mode and refused by recent MLflow (3.18 here) unless
``MLFLOW_ALLOW_FILE_STORE=true``: use SQLite. ``DO_NOT_TRACK=true`` (or
``MLFLOW_DISABLE_TELEMETRY=true``) stops MLflow's usage telemetry. The ``mlflow`` extra installs
``mlflow-skinny`` (the client, with SQLAlchemy and Alembic for the SQLite store); to browse the
runs, ``pip install mlflow`` (its UI is not in the skinny package) and
``mlflow ui --backend-store-uri sqlite:///mlflow.db``. The experiment is ``project``, else
``$MLFLOW_EXPERIMENT_NAME`` / ``$MLFLOW_EXPERIMENT_ID``, else ``"pgrad"``. A run started inside
an active MLflow run of yours becomes its child (nested).

A tracking failure never costs the training run: an error while logging an update warns once
(``RuntimeWarning``) and tracking stops for the rest of the run, training goes on; the same for
:meth:`TrackingCallback.log_final` and :meth:`TrackingCallback.finish`. Only starting the run
(``on_training_start``, before any training) raises, as :class:`pgrad.errors.ConfigError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import os
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from pgrad.callbacks import Callback
from pgrad.errors import ConfigError

KINDS = ("wandb", "mlflow")
DEFAULT_PROJECT = "pgrad"


def flatten_config(description: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"config": {"lr": 3e-4}}`` as ``{"config.lr": 3e-4}``: nested dicts joined with dots.

    Lists and empty dicts stay values (``config.hidden_sizes: [64, 64]``): a list's items are
    not separate settings.
    """
    flat: dict[str, Any] = {}
    for key, value in description.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def finite_numbers(values: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The entries of ``values`` that are finite real numbers (not bools), as floats."""
    numbers_only = {}
    for key, value in values.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        value = float(value)
        if math.isfinite(value):
            numbers_only[key] = value
    return numbers_only


def describe(agent: Any) -> dict[str, Any]:
    """``agent.describe_run()``; for a seed-batched group, its first seed's with ``seeds`` instead of ``seed``."""
    seeds = getattr(agent, "seeds", None)
    members = getattr(agent, "agents", None)
    if seeds is not None and members:
        description = dict(members[0].describe_run())
        description.pop("seed", None)
        return {**description, "seeds": list(seeds)}
    return agent.describe_run()


def default_run_name(agent: Any, run_dir: Path | None) -> str:
    """The run folder's name, or ``{algo}-{env}-seed{seed}`` without one."""
    if run_dir is not None:
        return Path(run_dir).resolve().name
    description = describe(agent)
    seeds = description.get("seeds")
    seed_part = f"seeds{'_'.join(str(s) for s in seeds)}" if seeds is not None else f"seed{description.get('seed')}"
    env = str(description.get("env")).replace("/", "_")  # ALE/Pong-v5: no slashes in a run name
    return f"{description.get('algo', agent.name)}-{env}-{seed_part}"


def package_missing(module_name: str) -> bool:
    """Whether ``module_name`` cannot be imported (looked up without importing it)."""
    try:
        return importlib.util.find_spec(module_name) is None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None (blocked) or has no spec
        return True


class TrackingCallback(Callback):
    """Log config, every update's metrics and the final summary to Weights & Biases or MLflow.

    Args:
        kind: ``"wandb"`` or ``"mlflow"``.
        project: the W&B project or MLflow experiment; None: the package's environment variable
            (``WANDB_PROJECT``, ``MLFLOW_EXPERIMENT_NAME``/``MLFLOW_EXPERIMENT_ID``) if set, else
            ``"pgrad"``.
        run_name: the run's name; None: the run folder's name, or ``{algo}-{env}-seed{seed}``
            when ``learn`` has no ``run_dir``.

    Raises:
        ConfigError: an unknown ``kind``, or its package is not installed.
    """

    def __init__(self, kind: str, project: str | None = None, run_name: str | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(f"tracking kind {kind!r} is unknown: use 'wandb' or 'mlflow'")
        self.kind = kind
        self.project = project
        self.run_name = run_name
        # checked here too (without importing) so that `pgrad train --track` fails before training
        if package_missing(kind):
            raise self._missing_package_error()
        self.run: Any = None
        """the wandb Run, or the mlflow ActiveRun; None before the first ``learn`` and after :meth:`finish`"""
        self._module: ModuleType | None = None
        self._failed = False  # a logging call failed: warned once, tracking off until finish
        self._last_step: int | None = None

    @property
    def active(self) -> bool:
        """Whether a run is open and logging (started, not finished, no failure)."""
        return self.run is not None and not self._failed

    # -- hooks ---------------------------------------------------------------------------------

    def on_training_start(self, agent: Any, run_dir: Path | None) -> None:
        """Start the run and log the config, unless this tracker's run is already open (another ``learn``)."""
        if self.run is not None:
            return  # training goes on in the same run: the config is logged already
        module = self._import()
        config = flatten_config(describe(agent))
        name = self.run_name or default_run_name(agent, run_dir)
        self._module, self._failed = module, False
        try:
            if self.kind == "wandb":
                self._start_wandb(module, name, config, run_dir)
            else:
                self._start_mlflow(module, name, config)
        except Exception as error:
            self._failed = True  # no second warning from finish: the error below says it all
            self.finish(failed=True)  # a run started before the failure (mlflow: logging the params)
            # before any training: better to say so now than to train untracked
            hint = " (to track without network or login: WANDB_MODE=offline)" if self.kind == "wandb" else ""
            message = one_line(error).rstrip(".")
            raise ConfigError(
                f"could not start the {self.kind} run: {type(error).__name__}: {message}{hint}"
            ) from error

    def on_update_end(self, agent: Any, row: dict[str, Any]) -> bool | None:
        """Log the row's finite numbers at step ``row["step"]``; never stops training."""
        if not self.active:
            return None
        metrics = finite_numbers(row, skip=("step",))
        step = int(row["step"])
        self._guarded("logging an update", self._log_metrics, metrics, step)
        self._last_step = step
        return None

    def on_training_end(self, agent: Any, run_dir: Path | None) -> None:
        """Flush what is buffered; the run stays open (:meth:`finish` ends it)."""
        if self.active and self.kind == "mlflow":
            # only async logging (MLFLOW_ENABLE_ASYNC_LOGGING) buffers; wandb's service writes as it goes
            flush = getattr(self._module, "flush_async_logging", None)
            if flush is not None:
                self._guarded("flushing", flush)

    # -- after training ------------------------------------------------------------------------

    def log_final(self, summary: dict[str, Any]) -> None:
        """Log ``summary``'s finite numbers (``eval_mean_return``, ``steps``, ...) as the run's summary metrics.

        wandb: ``run.summary[key]``; mlflow: metrics at the last logged step. Non-numbers (the
        algo name, None for an evaluation that was not run) are left out.
        """
        if not self.active:
            return
        values = finite_numbers(summary)
        if self.kind == "wandb":
            self._guarded("logging the summary", self.run.summary.update, values)
        else:
            step = self._last_step if self._last_step is not None else int(values.get("steps", 0))
            self._guarded("logging the summary", self._log_metrics, values, step)

    def finish(self, failed: bool = False) -> None:
        """End the run (wandb ``run.finish()``, mlflow ``end_run()``); does nothing the second time.

        Args:
            failed: mark the run failed (wandb exit code 1, mlflow status FAILED).
        """
        run, self.run = self.run, None
        if run is None:
            return
        try:
            if self.kind == "wandb":
                run.finish(exit_code=1 if failed else 0)
            else:
                self._end_mlflow(run, "FAILED" if failed else "FINISHED")
        except Exception as error:
            if not self._failed:
                self._warn("finishing the run", error)
        finally:
            self._module, self._failed, self._last_step = None, False, None

    def __enter__(self) -> TrackingCallback:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.finish(failed=error is not None)

    # -- internals -----------------------------------------------------------------------------

    def _missing_package_error(self) -> ConfigError:
        return ConfigError(f"tracking with {self.kind} needs its package: pip install 'pgrad[{self.kind}]'")

    def _import(self) -> ModuleType:
        try:
            return importlib.import_module(self.kind)
        except ImportError as error:
            raise self._missing_package_error() from error

    def _start_wandb(self, wandb: ModuleType, name: str, config: dict[str, Any], run_dir: Path | None) -> None:
        project = self.project
        if project is None and not os.environ.get("WANDB_PROJECT"):
            project = DEFAULT_PROJECT  # None lets wandb read WANDB_PROJECT
        directory = None
        if run_dir is not None:
            # wandb falls back to a temporary directory when dir does not exist yet
            directory = Path(run_dir).resolve()
            directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            config=config,
            dir=str(directory) if directory is not None else None,
            # a run of its own: neither returns nor finishes a wandb run the user has open
            reinit="create_new",
        )

    def _start_mlflow(self, mlflow: ModuleType, name: str, config: dict[str, Any]) -> None:
        from_environment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID")
        if self.project is not None or not from_environment:
            mlflow.set_experiment(self.project or DEFAULT_PROJECT)
        # inside a run of the user's (a sweep's parent run, say) ours is its child, not an error
        self.run = mlflow.start_run(run_name=name, nested=mlflow.active_run() is not None)
        # MLflow stores params as strings (str() of lists and None)
        mlflow.log_params(config, run_id=self.run.info.run_id)

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not metrics:
            return
        if self.kind == "wandb":
            self.run.log(metrics, step=step)
        else:
            # by run id, not the active run: the user may have started another since
            self._module.log_metrics(metrics, step=step, run_id=self.run.info.run_id)

    def _end_mlflow(self, run: Any, status: str) -> None:
        mlflow = self._module or importlib.import_module("mlflow")
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:
            mlflow.end_run(status=status)
        else:
            # no longer the active run (ended by the user, or another thread): end it by id
            mlflow.tracking.MlflowClient().set_terminated(run.info.run_id, status=status)

    def _guarded(self, what: str, function: Any, *args: Any) -> None:
        """Call ``function(*args)``; on an error, warn once and stop tracking (training goes on)."""
        try:
            function(*args)
        except Exception as error:
            self._failed = True
            self._warn(what, error)

    def _warn(self, what: str, error: Exception) -> None:
        warnings.warn(
            f"{self.kind} tracking failed while {what} ({type(error).__name__}: {one_line(error)}); "
            "tracking is off for the rest of this run, training goes on",
            RuntimeWarning,
            stacklevel=3,
        )


def one_line(error: BaseException) -> str:
    """The error's message on one line (MLflow's and wandb's span several)."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
