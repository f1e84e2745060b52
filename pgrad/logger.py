"""Training output: metrics.csv, episodes.csv, TensorBoard events and a progress display.

Rows are kept in memory too, so ``agent.save(path)`` can write the CSVs to a folder that was not
the one training logged into. Progress goes to stderr, keeping stdout clean for ``--json``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pgrad.io import atomic_write_text
from pgrad.rollout import EpisodeLog

EPISODE_FIELDS = ["step", "return", "length"]
RECENT_EPISODES = 100  # "recent return" = mean of the last 100 finished episodes, as in SB3 and RL Zoo


class CsvStream:
    """Append rows to a CSV file whose header is fixed by the first row's keys."""

    def __init__(self, path: Path, fieldnames: list[str] | None = None, append: bool = False) -> None:
        """``append``: the file already holds the header and rows (written whole by
        :func:`write_csv`); new rows go after them."""
        self.path = path
        self.handle: TextIO | None = None
        self.writer: csv.DictWriter | None = None
        if fieldnames is not None:  # header now, so the file exists even if no row ever comes
            self._open(fieldnames, append)

    def _open(self, fieldnames: list[str], append: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a" if append else "w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=fieldnames, extrasaction="ignore")
        if not append:
            self.writer.writeheader()
        self.handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            self._open(list(row))
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def continued_csv(path: Path, rows: list[dict[str, Any]], fieldnames: list[str] | None) -> CsvStream:
    """A stream into ``path`` that starts with ``rows`` (a resumed run's rows up to its checkpoint).

    The kept rows are written whole and atomically, then appended to: rewriting the file in place
    row by row would leave it short if the process were killed meanwhile, and the checkpoint,
    which counts the rows it expects, could then never resume.
    """
    if not rows:
        return CsvStream(path, fieldnames)
    names = fieldnames or list(rows[0])
    write_csv(path, rows, names)
    return CsvStream(path, names, append=True)


def write_csv(path: Path, rows: list[dict[str, Any]], fieldnames: list[str]) -> None:
    """Write ``rows`` to a CSV in one go (used by ``save`` into a new folder)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _parse_number(text: str) -> Any:
    """A CSV cell back as the int or float it was written from (str() of a float round-trips)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """A one-line bar on a terminal; plain lines at most every ``interval`` seconds otherwise."""

    def __init__(
        self, total_steps: int, start_step: int = 0, stream: TextIO | None = None, interval: float = 10.0
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.total = total_steps
        self.start_step = start_step
        self.start_time = time.perf_counter()
        self.interval = interval if not self.interactive else 0.1
        self.last_print = -math.inf

    def update(self, step: int, recent_return: float, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last_print < self.interval:
            return
        self.last_print = now
        done = step - self.start_step
        elapsed = now - self.start_time
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = max(self.total - step, 0) / rate if rate > 0 else math.inf  # the last iteration may overshoot
        ret = f"{recent_return:.1f}" if math.isfinite(recent_return) else "-"
        text = f"{step:,}/{self.total:,} steps | {rate:,.0f} steps/s | return {ret} | ETA {_format_duration(eta)}"
        if self.interactive:
            width = 24
            filled = int(width * min(1.0, step / max(1, self.total)))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def quiet_tensorboard_thread_errors() -> None:
    """Keep a TensorBoard write error to one report: the caller's.

    TensorBoard writes events from a thread; when a write fails (a full disk), the thread stores
    the OSError, which the next ``add_scalar``/``flush`` raises in the training thread (pgrad
    turns it into one line), and then lets it end the thread, which makes Python print it as a
    thread traceback too (tensorboard/summary/writer/event_file_writer.py, ``_AsyncWriterThread``).
    This hook drops only that thread's OSErrors; every other thread error reaches the previous hook.
    """
    previous = threading.excepthook
    if getattr(previous, "drops_tensorboard_write_errors", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    hook.drops_tensorboard_write_errors = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class RunLogger:
    """Collects per-update metrics and finished episodes; streams them to a run folder if given."""

    def __init__(self, run_dir: str | os.PathLike | None, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.metrics: list[dict[str, Any]] = []
        self.episodes: list[dict[str, Any]] = []
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.recent_lengths: deque[int] = deque(maxlen=RECENT_EPISODES)
        self._metrics_csv = self._episodes_csv = None
        self._tb = None
        self._tb_failed = False  # a TensorBoard write raised already (close() then stays quiet)
        self.attach(run_dir, tensorboard)

    def attach(
        self, run_dir: str | os.PathLike | None, tensorboard: bool = True, purge_step: int | None = None
    ) -> None:
        """Start streaming to ``run_dir`` (or stop streaming if None).

        The CSVs are rewritten from the rows in memory; ``purge_step`` hides TensorBoard events
        at or after that step from earlier writers (a run resumed from a checkpoint).
        """
        self.close()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics_csv = continued_csv(self.run_dir / "metrics.csv", self.metrics, None)
        self._episodes_csv = continued_csv(self.run_dir / "episodes.csv", self.episodes, EPISODE_FIELDS)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it costs ~1 s

            quiet_tensorboard_thread_errors()
            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)
            self._tb_failed = False

    def restore(self, run_dir: Path, metrics_rows: int, episode_rows: int) -> None:
        """Reload the first rows of ``run_dir``'s CSVs (those logged up to a checkpoint) into memory."""
        from pgrad.errors import PolicyFileError

        loaded = []
        for name, count in (("metrics.csv", metrics_rows), ("episodes.csv", episode_rows)):
            path = Path(run_dir) / name
            rows: list[dict[str, Any]] = []
            if count:
                if not path.is_file():
                    raise PolicyFileError(f"{path} is missing; the checkpoint expects {count} rows in it")
                with open(path, newline="", encoding="utf-8") as handle:
                    rows = [
                        {k: _parse_number(v) for k, v in row.items()}
                        for _, row in zip(range(count), csv.DictReader(handle))
                    ]
                if len(rows) < count:
                    raise PolicyFileError(f"{path} has {len(rows)} rows; the checkpoint expects at least {count}")
            loaded.append(rows)
        self.metrics, self.episodes = loaded
        self.recent_returns.clear()
        self.recent_lengths.clear()
        for row in self.episodes[-RECENT_EPISODES:]:
            self.recent_returns.append(row["return"])
            self.recent_lengths.append(row["length"])

    @property
    def recent_return(self) -> float:
        """Mean return of the last 100 finished episodes (NaN before the first)."""
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else math.nan

    @property
    def recent_length(self) -> float:
        return sum(self.recent_lengths) / len(self.recent_lengths) if self.recent_lengths else math.nan

    def log_episodes(self, log: EpisodeLog, step_offset: int = 0) -> None:
        for step, episode_return, length in zip(log.steps, log.returns, log.lengths):
            row = {"step": step + step_offset, "return": episode_return, "length": length}
            self.episodes.append(row)
            self.recent_returns.append(episode_return)
            self.recent_lengths.append(length)
            if self._episodes_csv is not None:
                self._episodes_csv.write(row)
            if self._tb is not None:
                self._tensorboard_scalars({"episode/return": episode_return, "episode/length": length}, row["step"])

    def log_update(self, row: dict[str, Any]) -> None:
        """One row per update: ``step`` and ``wall_time`` first, then anything numeric."""
        self.metrics.append(row)
        if self._metrics_csv is not None:
            self._metrics_csv.write(row)
        if self._tb is not None:
            scalars = {
                f"train/{key}": value
                for key, value in row.items()
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value)
            }
            self._tensorboard_scalars(scalars, row["step"])

    def flush(self) -> None:
        if self._tb is not None:
            self._tensorboard(lambda writer: writer.flush())

    def _tensorboard_scalars(self, scalars: dict[str, float], step: int) -> None:
        """Write ``scalars`` (tag -> value) at ``step`` as one TensorBoard event.

        ``SummaryWriter.add_scalar`` writes one event per scalar, and its per-call work (a
        protobuf, a numpy conversion, an event through the writer's queue) made the ten scalars
        of a row cost most of a one-step actor-critic update. One ``Summary`` with a value per
        tag is what ``add_scalar`` writes, ten times over: the same tags, steps and values for
        TensorBoard and every reader of event files (the Summary proto holds a list of values).
        """
        if not scalars:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary  # TensorBoard is loaded already

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()])
        self._tensorboard(lambda writer: writer._get_file_writer().add_summary(summary, step))

    def _tensorboard(self, call: Callable[[Any], Any]) -> None:
        """``call(SummaryWriter)``, remembering a failed write (a full disk: an OSError)."""
        try:
            call(self._tb)
        except OSError:
            self._tb_failed = True
            raise

    def close(self) -> None:
        for stream in (self._metrics_csv, self._episodes_csv):
            if stream is not None:
                stream.close()
        writer, self._tb = self._tb, None
        self._metrics_csv = self._episodes_csv = None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                # TensorBoard's writer keeps its first write error and raises it again at every
                # call, close included; once raised to the caller, it is not raised a second time
                # (from the cleanup of the failure it already reported).
                if not self._tb_failed:
                    raise

    def write_csvs(self, folder: Path) -> None:
        """Write both CSVs into ``folder`` from memory (no-op for the folder being streamed to)."""
        if self.run_dir is not None and Path(folder).resolve() == self.run_dir.resolve():
            return
        if self.metrics:
            write_csv(Path(folder) / "metrics.csv", self.metrics, list(self.metrics[0]))
        write_csv(Path(folder) / "episodes.csv", self.episodes, EPISODE_FIELDS)
