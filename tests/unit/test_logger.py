import io

import numpy as np

from pgrad.logger import Progress, RunLogger
from pgrad.rollout import EpisodeLog


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_redraws_one_line_with_rate_return_and_eta():
    stream = FakeTerminal()
    progress = Progress(total_steps=1000, stream=stream)
    progress.update(500, 42.0, final=True)
    text = stream.getvalue()
    assert text.startswith("\r[") and text.endswith("\n")
    assert "500/1,000 steps" in text and "steps/s" in text and "return 42.0" in text and "ETA" in text


def test_plain_lines_when_not_a_terminal_and_rate_limited():
    stream = io.StringIO()
    progress = Progress(total_steps=1000, stream=stream, interval=3600)
    progress.update(100, float("nan"))
    progress.update(200, 1.0)  # within the interval: not printed
    progress.update(1000, 2.0, final=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert "return -" in lines[0] and "1,000/1,000" in lines[1]


def test_run_logger_streams_csvs_and_writes_them_elsewhere_from_memory(tmp_path):
    logger = RunLogger(tmp_path / "run", tensorboard=False)
    logger.log_episodes(EpisodeLog(steps=[10, 25], returns=[1.5, 2.5], lengths=[10, 15]))
    logger.log_update({"step": 32, "wall_time": 0.1, "loss": 0.5})
    assert logger.recent_return == 2.0
    logger.close()
    assert (tmp_path / "run" / "episodes.csv").read_text().splitlines() == [
        "step,return,length",
        "10,1.5,10",
        "25,2.5,15",
    ]
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1] == "32,0.1,0.5"
    logger.write_csvs(tmp_path / "copy")
    assert (tmp_path / "copy" / "episodes.csv").read_text() == (tmp_path / "run" / "episodes.csv").read_text()


def test_tensorboard_holds_every_scalar_as_add_scalar_writes_it(tmp_path):
    """A row's scalars go to TensorBoard as one event (pgrad/logger.py, _tensorboard_scalars):
    a reader sees the same tags, steps and values as from one add_scalar per scalar."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    rows = [
        {"step": 8 * i, "wall_time": 0.5 * i, "loss": 1.0 / (i + 1), "episodes": i, "nan": float("nan"), "ok": 2.5}
        for i in range(1, 6)
    ]
    episodes = EpisodeLog(steps=[3, 9], returns=[10.0, -2.5], lengths=[3, 6])
    logger = RunLogger(tmp_path / "batched")
    logger.log_episodes(episodes)
    for row in rows:
        logger.log_update(row)
    logger.close()
    # what the logger wrote before: one add_scalar per finite number
    writer = SummaryWriter(log_dir=str(tmp_path / "plain" / "tb"))
    for step, episode_return, length in zip(episodes.steps, episodes.returns, episodes.lengths):
        writer.add_scalar("episode/return", episode_return, step)
        writer.add_scalar("episode/length", length, step)
    for row in rows:
        for key, value in row.items():
            if key != "step" and value == value:
                writer.add_scalar(f"train/{key}", value, row["step"])
    writer.close()

    def scalars(folder):
        accumulator = EventAccumulator(str(folder)).Reload()
        return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}

    batched, plain = scalars(tmp_path / "batched" / "tb"), scalars(tmp_path / "plain" / "tb")
    assert batched == plain
    assert set(plain) == {
        "episode/return",
        "episode/length",
        "train/wall_time",
        "train/loss",
        "train/episodes",
        "train/ok",
    }


def test_event_checksums_are_tensorboards():
    """The masked CRC-32C of every record equals TensorBoard's own (pure-Python) computation."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboards

    from pgrad.logger import masked_crc32c

    rng = np.random.default_rng(0)
    for size in [0, 1, 7, 8, 9, 64, 255, 1000, 4099]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert masked_crc32c(data) == tensorboards(data)


def test_a_resumed_run_hides_the_events_logged_after_its_checkpoint(tmp_path):
    """A logger attached with purge_step (a resumed run) makes TensorBoard drop what the earlier
    file logged at or after that step, so a curve never shows the same steps twice; and a reader
    checks every record's checksums as it loads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = RunLogger(tmp_path)
    for step in range(1, 11):
        first.log_update({"step": step, "loss": float(step)})
    first.close()
    resumed = RunLogger(None)
    resumed.attach(tmp_path, purge_step=6)  # the checkpoint was at step 5
    for step in range(6, 9):
        resumed.log_update({"step": step, "loss": 100.0 + step})
    resumed.close()
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 2
    accumulator = EventAccumulator(str(tmp_path / "tb")).Reload()
    loaded = [(event.step, event.value) for event in accumulator.Scalars("train/loss")]
    assert loaded == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 106.0), (7, 107.0), (8, 108.0)]


def test_events_reach_the_file_within_the_flush_interval(tmp_path):
    """A TensorBoard watching a running training sees its events: the event file is flushed once
    FLUSH_SECONDS have passed since the last flush, not only when its buffer fills or it closes."""
    import pgrad.logger

    logger = RunLogger(tmp_path)
    event_file = logger._tb.path
    size = event_file.stat().st_size  # the file's first event, flushed at opening
    logger.log_update({"step": 1, "loss": 1.0})
    assert event_file.stat().st_size == size  # buffered
    logger._tb._flushed_at -= pgrad.logger.FLUSH_SECONDS + 1  # as if that much time had passed
    logger.log_update({"step": 2, "loss": 2.0})
    assert event_file.stat().st_size > size
    logger.close()
