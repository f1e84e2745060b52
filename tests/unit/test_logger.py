import io

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
