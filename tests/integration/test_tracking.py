"""pgrad.tracking: W&B (offline) and MLflow (local SQLite store) runs of a short PPO training,
read back from what each package wrote, with no network."""

from __future__ import annotations

import csv
import faulthandler
import json
import math
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import pgrad
from pgrad.errors import ConfigError
from pgrad.tracking import TrackingCallback, default_run_name, flatten_config

# the test extra installs both; still, a clear skip beats an import error in a bare environment
wandb = pytest.importorskip("wandb")
mlflow = pytest.importorskip("mlflow")

# MLflow's SQLAlchemy store, on its first use; nothing pgrad can change
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")

FINAL = {"mean_return": 9.5, "std_return": 0.5, "episodes": 3}


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail loudly (traceback, exit) instead of hanging CI if a tracking backend ever blocks."""
    faulthandler.dump_traceback_later(180, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B without network, login or files outside tmp_path."""
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave stdout to pytest
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))


@pytest.fixture
def mlflow_local(tmp_path, monkeypatch):
    """MLflow on a SQLite store in tmp_path, no telemetry; returns the tracking URI."""
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    yield uri
    while mlflow.active_run() is not None:  # a failed test must not leave a run for the next
        mlflow.end_run()


def small_ppo() -> Any:
    return pgrad.PPO("CartPole-v1", preset="none", n_steps=64, batch_size=64, n_epochs=1)


def metrics_csv(run_dir: Path) -> list[dict[str, float]]:
    """pgrad's own metrics.csv, as floats: what the tracker should have logged."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value != ""} for row in csv.DictReader(handle)]


def finished_wandb_records(path: Path, timeout: float = 60.0) -> list[Any]:
    """The records of a finished offline run, once wandb's service has written them all.

    ``run.finish()`` returns when the service has taken the run's exit, but the service (a process
    of its own) may write the file later: on a loaded machine the file has been read here with no
    records yet. So this reads it until it holds the run's ``exit`` record, for at most ``timeout``
    seconds, then returns what there is (the assertions then say what is missing).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = read_wandb_records(path)
        except Exception:  # a record being written: read again
            records = []
        if any(record.WhichOneof("record_type") == "exit" for record in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_wandb_records(path: Path) -> list[Any]:
    """The records of an offline run's ``.wandb`` file, parsed with wandb's own protobuf classes.

    Recent wandb (0.31 here) has no Python reader for this file (its Go service writes it), so the
    container is read here: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB's
    log format (32 KiB blocks; each chunk: CRC32C, length, type FULL/FIRST/MIDDLE/LAST) whose
    payloads are serialized ``wandb.proto.wandb_internal_pb2.Record`` messages.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a version-0 W&B transaction log"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:  # zero padding
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_run_data(records: list[Any]) -> dict[str, Any]:
    """Config, history rows and final summary of a run, from its records (values JSON-decoded)."""

    def key(item: Any) -> str:
        return item.key or ".".join(item.nested_key)

    run = next(record.run for record in records if record.WhichOneof("record_type") == "run")
    config = {key(item): json.loads(item.value_json) for item in run.config.update}
    history, summary = [], {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            summary.update({key(item): json.loads(item.value_json) for item in record.summary.update})
    return {"project": run.project, "name": run.display_name, "config": config, "history": history, "summary": summary}


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="'wandb' or 'mlflow'") as caught:
        TrackingCallback("tensorboard")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", ["wandb", "mlflow"])
def test_missing_package_names_the_pip_extra(kind, monkeypatch):
    tracker = TrackingCallback(kind)  # installed here
    monkeypatch.setitem(sys.modules, kind, None)  # as if it were not: importing it raises ImportError
    expected = f"pip install 'pgrad[{kind}]'"
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        TrackingCallback(kind)
    with pytest.raises(ConfigError, match=r"pgrad\[" + kind):
        tracker.on_training_start(None, None)


def test_config_is_flattened_and_the_default_run_name_says_what_ran():
    agent = small_ppo()
    flat = flatten_config(agent.describe_run())
    assert flat["algo"] == "ppo" and flat["config.lr"] == agent.config.lr
    assert flat["config.hidden_sizes"] == [64, 64] and flat["versions.torch"]
    assert default_run_name(agent, None) == "ppo-CartPole-v1-seed0"
    assert default_run_name(agent, Path("runs/my-run")) == "my-run"


def test_wandb_offline_run_inside_the_run_folder(tmp_path, wandb_offline, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from-the-environment")  # used: no project given
    run_dir = tmp_path / "run"
    agent = small_ppo()
    with TrackingCallback("wandb") as tracker:
        agent.learn(256, run_dir=run_dir, quiet=True, callback=[tracker])
        tracker.log_final(agent.summary(FINAL))
    assert tracker.run is None
    tracker.finish()  # idempotent

    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1, "the offline run is kept inside the run folder"
    (log,) = offline_runs[0].glob("run-*.wandb")
    run = wandb_run_data(finished_wandb_records(log))
    assert run["project"] == "from-the-environment" and run["name"] == "run"
    assert run["config"]["algo"] == "ppo" and run["config"]["env"] == "CartPole-v1"
    assert run["config"]["config.lr"] == pytest.approx(3e-4) and run["config"]["config.n_steps"] == 64

    # one history row per update, at the environment step, with every finite number of the row
    expected = metrics_csv(run_dir)
    assert [row["_step"] for row in run["history"]] == [row["step"] for row in expected] == [64, 128, 192, 256]
    for logged, written in zip(run["history"], expected, strict=True):
        for name in ("episode_return_mean", "sps", "policy_loss", "value_loss", "entropy", "lr"):
            assert logged[name] == pytest.approx(written[name]), name
    assert run["summary"]["eval_mean_return"] == 9.5 and run["summary"]["eval_std_return"] == 0.5
    assert run["summary"]["steps"] == 256 and "algo" not in run["summary"]


def test_mlflow_local_store_params_metric_history_and_summary(tmp_path, mlflow_local):
    run_dir = tmp_path / "run"
    agent = small_ppo()
    tracker = TrackingCallback("mlflow", project="pgrad-tests")
    agent.learn(128, run_dir=run_dir, quiet=True, callback=[tracker])
    agent.learn(128, run_dir=run_dir, quiet=True, callback=[tracker])  # training goes on: the same run
    # NaN, bools and strings are not metrics
    tracker.on_update_end(agent, {"step": 256, "nan_metric": math.nan, "flag": True, "note": "x"})
    tracker.log_final(agent.summary(FINAL))
    run_id = tracker.run.info.run_id
    tracker.finish()
    tracker.finish()
    assert mlflow.active_run() is None

    client = mlflow.tracking.MlflowClient(mlflow_local)
    experiment = client.get_experiment_by_name("pgrad-tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == run_id and run.info.run_name == "run" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["algo"] == "ppo" and params["env"] == "CartPole-v1" and params["seed"] == "0"
    assert float(params["config.lr"]) == pytest.approx(3e-4) and params["config.hidden_sizes"] == "[64, 64]"

    expected = metrics_csv(run_dir)
    for name in ("episode_return_mean", "policy_loss", "sps"):
        history = sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, name))
        assert [step for step, _ in history] == [64, 128, 192, 256], name
        assert [value for _, value in history] == pytest.approx([row[name] for row in expected]), name
    assert client.get_metric_history(run_id, "nan_metric") == []
    assert "flag" not in run.data.metrics and "note" not in run.data.metrics
    assert run.data.metrics["eval_mean_return"] == 9.5 and run.data.metrics["eval_std_return"] == 0.5
    assert run.data.metrics["steps"] == 256
    assert run.data.metrics["last_100_episode_return_mean"] == pytest.approx(
        agent.summary()["last_100_episode_return_mean"]
    )


def test_a_tracking_failure_warns_once_and_training_goes_on(tmp_path, mlflow_local, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("tracking server unreachable\nsecond line")

    agent = small_ppo()
    tracker = TrackingCallback("mlflow")
    monkeypatch.setattr(mlflow, "log_metrics", unreachable)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent.learn(256, run_dir=tmp_path / "run", quiet=True, callback=[tracker])
        tracker.log_final(agent.summary(FINAL))
        tracker.finish()
    ours = [w for w in caught if "mlflow tracking failed" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    assert "ConnectionError: tracking server unreachable second line" in str(ours[0].message)
    assert agent.total_steps == 256 and len(metrics_csv(tmp_path / "run")) == 4
    assert mlflow.active_run() is None


def test_a_run_that_cannot_start_is_a_config_error_before_training(tmp_path, mlflow_local, monkeypatch):
    def refused(*args, **kwargs):
        raise RuntimeError("store refused")

    agent = small_ppo()
    monkeypatch.setattr(mlflow, "log_params", refused)
    with pytest.raises(ConfigError, match="could not start the mlflow run: RuntimeError: store refused"):
        agent.learn(256, run_dir=tmp_path / "run", quiet=True, callback=[TrackingCallback("mlflow")])
    assert agent.total_steps == 0
    assert mlflow.active_run() is None  # the run started before the failure was ended
