"""Training output: metrics.csv, episodes.csv, TensorBoard events and a progress display.

Rows are kept in memory too, so ``agent.save(path)`` can write the CSVs to a folder that was not
the one training logged into. Progress goes to stderr, keeping stdout clean for ``--json``.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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


# The event file is flushed at the first write this long after the previous flush, so that a
# TensorBoard watching a running training sees it (SummaryWriter flushes every 120 s); between
# flushes the events wait in the file's buffer.
FLUSH_SECONDS = 10.0


class TensorBoardEventFile:
    """One TensorBoard event file, written in the calling thread.

    The format is TensorBoard's (the TFRecord framing of ``Event`` protos): each record is its
    length (uint64, little-endian), the masked CRC-32C of those 8 bytes, the serialised event and
    its masked CRC-32C (tensorboard/summary/writer/record_writer.py). The file opens with a
    ``file_version`` event, as every writer's does, and on a resumed run with a ``SessionLog.START``
    event at ``purge_step``, which tells readers to drop what earlier files logged at or after it
    (what ``SummaryWriter(purge_step=...)`` writes).

    Why not ``torch.utils.tensorboard.SummaryWriter``: without TensorFlow installed, TensorBoard
    computes the two checksums of every event in pure Python, ~35 us an event in its writer
    thread, which holds the interpreter lock the training thread needs: one-step actor-critic
    logs a metrics row every env step, and that was a twentieth of its update. Here the checksum
    is the ``google-crc32c`` package's C code (a dependency; TensorBoard's own Python code if it
    cannot be imported), and the write goes through the file's buffer: no thread, and a failed
    write (a full disk) raises where it happens.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self._event = Event
        log_dir.mkdir(parents=True, exist_ok=True)
        # TensorBoard's naming (time, host, pid), and a count that keeps two files of one second apart
        stem = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        path = log_dir / stem
        for count in itertools.count(1):
            if not path.exists():
                break
            path = log_dir / f"{stem}.{count}"
        self.path = path
        self._file: BinaryIO | None = open(path, "xb")  # noqa: SIM115  (closed by close())
        self._flushed_at = time.monotonic()
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def add_summary(self, summary: Any, step: int) -> None:
        """Append one ``Summary`` at ``step``, stamped with the wall time now."""
        self._write(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(
            header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
        )
        if time.monotonic() - self._flushed_at > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._flushed_at = time.monotonic()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of ``data`` that TFRecord files store: the CRC rotated right by 15 bits
    plus a constant (tensorboard/compat/tensorflow_stub/pywrap_tensorflow.py, ``masked_crc32c``)."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _load_crc32c() -> Callable[[bytes], int]:
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:  # TensorBoard's pure-Python CRC-32C: correct, about a hundred times slower
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c

        return crc32c


_crc32c = _load_crc32c()


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
            self._tb = TensorBoardEventFile(self.run_dir / "tb", purge_step=purge_step)
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
        from tensorboard.compat.proto.summary_pb2 import Summary  # loaded with the event file's protos

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()])
        self._tensorboard(lambda writer: writer.add_summary(summary, step))

    def _tensorboard(self, call: Callable[[Any], Any]) -> None:
        """``call(event file)``, remembering a failed write (a full disk: an OSError)."""
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
                # a failed write leaves its bytes in the file's buffer, and closing tries them
                # again; once raised to the caller, the error is not raised a second time (from
                # the cleanup of the failure it already reported).
                if not self._tb_failed:
                    raise

    def write_csvs(self, folder: Path) -> None:
        """Write both CSVs into ``folder`` from memory (no-op for the folder being streamed to)."""
        if self.run_dir is not None and Path(folder).resolve() == self.run_dir.resolve():
            return
        if self.metrics:
            write_csv(Path(folder) / "metrics.csv", self.metrics, list(self.metrics[0]))
        write_csv(Path(folder) / "episodes.csv", self.episodes, EPISODE_FIELDS)
