"""The command line: a tiny train -> eval -> plot cycle, and exit status 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pgrad.cli import main

TINY = ["--set", "n_steps=64", "--set", "batch_size=32", "--set", "n_epochs=1", "--set", "n_envs=2"]


def test_train_eval_plot_cycle(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--steps",
                "256",
                "--out",
                str(run),
                "--quiet",
                "--eval-episodes",
                "2",
                *TINY,
            ]
        )
        == 0
    )
    for name in ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "ppo" and config["env"] == "CartPole-v1" and config["config"]["n_steps"] == 64
    assert config["versions"]["torch"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] >= 256 and summary["eval_episodes"] == 2
    capsys.readouterr()

    assert main(["eval", str(run), "--episodes", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"env", "episodes", "mean_return", "std_return", "returns", "lengths"}
    assert result["episodes"] == 3 and len(result["returns"]) == 3

    assert main(["plot", str(run), "--out", str(tmp_path / "curve.png")]) == 0
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "ppoo", "CartPole-v1"], "unknown algorithm 'ppoo' (did you mean ppo?)"),
        (["train", "ppo", "CartPol-v1"], "CartPole-v1"),
        (["train", "ppo", "CartPole-v1", "--set", "lrr=1"], "unknown hyperparameter 'lrr'"),
        (["train", "ppo", "CartPole-v1", "--set", "gamma=2"], "gamma=2.0 is out of range"),
        (["train", "ppo", "CartPole-v1", "--set", "lr"], "--set expects KEY=VALUE"),
        (["train", "ppo", "CartPole-v1", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "ppo", "Pendulum-v1", "--set", "action_dist=categorical"], "needs a Discrete action space"),
        (["eval", "/nonexistent/run"], "no saved policy"),
        (["plot", "/nonexistent/run"], "run folder not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_usage_error_exit_status_from_a_real_process():
    done = subprocess.run([sys.executable, "-m", "pgrad.cli", "train"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "required" in done.stderr


def test_list_shows_algorithms_presets_envs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ppo" in out and "CartPole-v1" in out and "pgrad/ContinuousCartPole-v0" in out
    assert main(["list", "ppo"]) == 0
    assert "clip_coef" in capsys.readouterr().out


def test_training_failure_exits_1_and_keeps_the_checkpoint(tmp_path, capsys):
    import gymnasium as gym

    gym.register("pgradtest/NaNCartPole-v0", entry_point="tests.integration.test_ppo:NaNAfterEnv")
    run = tmp_path / "run"
    status = main(["train", "ppo", "pgradtest/NaNCartPole-v0", "--steps", "2000", "--out", str(run), "--quiet", *TINY])
    assert status == 1
    err = capsys.readouterr().err.strip()
    # two envs, each failing after its 300th step: transition 601 is the first bad one
    assert "non-finite observation" in err and "step 601" in err and "checkpoint" in err
    assert len(err.splitlines()) == 1
    assert json.loads((run / "checkpoint" / "state.json").read_text())["total_steps"] <= 512
    assert not (run / "policy.safetensors").exists()


def test_several_seeds_train_in_parallel_and_aggregate(tmp_path, capsys):
    run = tmp_path / "multi"
    argv = [
        "train",
        "ppo",
        "CartPole-v1",
        "--seeds",
        "0",
        "1",
        "--steps",
        "256",
        "--out",
        str(run),
        "--quiet",
        "--eval-episodes",
        "2",
        "--workers",
        "2",
        *TINY,
    ]
    assert main(argv) == 0
    for seed in (0, 1):
        folder = run / f"seed_{seed}"
        assert json.loads((folder / "config.json").read_text())["seed"] == seed
        assert (folder / "policy.safetensors").is_file() and (folder / "episodes.csv").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["completed_seeds"] == [0, 1]
    assert summary["eval_mean_return"]["n"] == 2
    per_seed = [summary["runs"][f"seed_{s}"]["eval_mean_return"] for s in (0, 1)]
    assert summary["eval_mean_return"]["mean"] == sum(per_seed) / 2
    # the two seeds really are different runs
    assert (run / "seed_0" / "episodes.csv").read_text() != (run / "seed_1" / "episodes.csv").read_text()
    assert main(["plot", str(run), "--out", str(tmp_path / "multi.png")]) == 0


@pytest.mark.parametrize("env_id", ["CartPole-v1", "InvertedPendulum-v5"])
def test_eval_video_writes_an_mp4(env_id, tmp_path, capsys):
    import pgrad

    agent = pgrad.PPO(env_id, seed=0, preset="none", n_steps=64, batch_size=32)
    agent.save(tmp_path / "run")
    video = tmp_path / "episode.mp4"
    assert main(["eval", str(tmp_path / "run"), "--episodes", "1", "--video", str(video), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    data = video.read_bytes()
    assert data[4:8] == b"ftyp"  # an MP4 container
    import imageio.v2 as imageio

    frames = imageio.mimread(video, memtest=False)
    assert len(frames) == result["lengths"][0] + 1 and frames[0].ndim == 3


def test_report_writes_markdown_html_and_figures(tmp_path, capsys):
    run = tmp_path / "multi"
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--seeds",
                "0",
                "1",
                "--steps",
                "512",
                "--out",
                str(run),
                "--quiet",
                "--eval-episodes",
                "2",
                *TINY,
            ]
        )
        == 0
    )
    single = tmp_path / "pend"
    assert (
        main(
            [
                "train",
                "ppo",
                "Pendulum-v1",
                "--steps",
                "512",
                "--out",
                str(single),
                "--quiet",
                "--eval-episodes",
                "1",
                "--set",
                "n_steps=256",
                "--set",
                "batch_size=64",
            ]
        )
        == 0
    )
    out = tmp_path / "rep" / "report.md"
    assert main(["report", str(run), str(single), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| CartPole-v1 | ppo | 2 |" in text and "| Pendulum-v1 | ppo | 1 |" in text
    assert "too few seeds" in text
    assert (tmp_path / "rep" / "report.html").read_text().startswith("<!doctype html>")
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert "report_CartPole-v1_curves.png" in pngs and "report_CartPole-v1_profile.png" in pngs
    assert main(["report", str(tmp_path / "nothing")]) == 2
