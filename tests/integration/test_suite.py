"""benchmarks/suite.py on a tiny budget: it trains what is missing, resumes, and tabulates honestly."""

from __future__ import annotations

import json

from tests.benchmark_scripts import load_benchmark


def test_suite_trains_missing_seeds_only_and_reports(tmp_path, capsys, monkeypatch):
    suite = load_benchmark("suite")
    monkeypatch.setitem(suite.GOALS, ("ppo", "CartPole-v1"), 475)
    out = tmp_path / "suite"
    common = ["--algos", "ppo", "--envs", "CartPole-v1", "--steps", "512", "--out", str(out), "--workers", "1"]
    assert suite.main([*common, "--seeds", "0"]) == 0
    first = (out / "ppo" / "CartPole-v1" / "seed_0" / "summary.json").stat().st_mtime_ns
    assert suite.main([*common, "--seeds", "0", "1"]) == 0
    # seed 0 was done and is not trained again; seed 1 is added
    assert (out / "ppo" / "CartPole-v1" / "seed_0" / "summary.json").stat().st_mtime_ns == first
    rows = json.loads((out / "suite.json").read_text())
    assert [(r["algo"], r["env"], r["seeds_done"]) for r in rows] == [("ppo", "CartPole-v1", 2)]
    assert rows[0]["ci_low"] <= rows[0]["iqm"] <= rows[0]["ci_high"]
    table = (out / "suite.md").read_text()
    # seeds 0 and 1 are development seeds: numbers, but no verdict on the goal
    assert "| ppo | CartPole-v1 | 512 | 2 development |" in table
    assert ">= 475: not judged (development seeds, 2 done)" in table and ": met" not in table and "NOT met" not in table
    assert "Protocol: presets are chosen on the development seeds 0-4" in table
    assert "| ppo | CartPole-v1 | 0: " in table and ", 1: " in table  # the per-seed table
    assert (out / "report.md").is_file()
    aggregate = json.loads((out / "ppo" / "CartPole-v1" / "summary.json").read_text())
    assert aggregate["completed_seeds"] == [0, 1]
    # two training calls, one process each: the row's cost adds them up
    calls = json.loads((out / "ppo" / "CartPole-v1" / "cost.json").read_text())
    assert [(c["processes"], c["seeds"]) for c in calls] == [(1, [0]), (1, [1])]
    assert rows[0]["core_hours"] == sum(c["wall_seconds"] for c in calls) / 3600.0


def test_suite_judges_goals_on_evaluation_seeds_only(tmp_path, capsys, monkeypatch):
    suite = load_benchmark("suite")
    assert suite.parse_seeds(["eval"]) == list(range(1000, 1010))
    assert suite.parse_seeds(["dev", "3", "7"]) == [0, 1, 2, 3, 4, 7]
    assert suite.seed_role([1000, 1003]) == "evaluation" and suite.seed_role([0, 1000]) == "other"
    monkeypatch.setitem(suite.GOALS, ("ppo", "CartPole-v1"), 475)
    monkeypatch.setattr(suite, "MIN_EVALUATION_SEEDS", 2)
    out = tmp_path / "suite"
    argv = ["--algos", "ppo", "--envs", "CartPole-v1", "--steps", "512", "--out", str(out)]
    assert suite.main([*argv, "--workers", "1", "--seeds", "1000", "1001", "--no-report"]) == 0
    table = (out / "suite.md").read_text()
    assert "| ppo | CartPole-v1 | 512 | 2 evaluation |" in table and ">= 475: NOT met" in table  # 512 steps
    capsys.readouterr()
    # a goal every policy reaches (an episode lasts at least 8 steps) is met on the same seeds...
    monkeypatch.setitem(suite.GOALS, ("ppo", "CartPole-v1"), 5)
    assert suite.main([*argv, "--seeds", "1000", "1001", "--list"]) == 0
    assert ">= 5: met" in capsys.readouterr().out
    # ...but not judged on one evaluation seed fewer than the protocol asks
    assert suite.main([*argv, "--seeds", "1000", "--list"]) == 0
    assert ">= 5: not judged (evaluation seeds, 1 done)" in capsys.readouterr().out


def test_suite_skips_pairs_without_a_preset(tmp_path, capsys):
    suite = load_benchmark("suite")
    assert suite.main(["--algos", "ppo", "--envs", "Acrobot-v1", "--out", str(tmp_path), "--list"]) == 0
    assert "skipping ppo on Acrobot-v1: no shipped preset" in capsys.readouterr().err


def test_suite_batched_trains_ppo_seeds_as_one_model(tmp_path, capsys):
    suite = load_benchmark("suite")
    out = tmp_path / "suite"
    argv = [
        "--algos",
        "ppo",
        "--envs",
        "CartPole-v1",
        "--steps",
        "512",
        "--out",
        str(out),
        "--workers",
        "1",
        "--seeds",
        "0",
        "1",
        "--batched",
        "--no-report",
    ]
    assert suite.main(argv) == 0
    assert "as seed-batched models" in capsys.readouterr().err
    rows = json.loads((out / "suite.json").read_text())
    assert rows[0]["seeds_done"] == 2


def test_suite_continues_a_stopped_batched_pair_from_its_checkpoints(tmp_path):
    import torch
    from safetensors.torch import load_file

    from pgrad.algos.ppo_batched import SeedBatchedPPO

    suite = load_benchmark("suite")
    argv = [
        "--algos",
        "ppo",
        "--envs",
        "CartPole-v1",
        "--steps",
        "512",
        "--workers",
        "1",
        "--seeds",
        "0",
        "1",
        "--batched",
        "--no-report",
    ]
    assert suite.main([*argv, "--out", str(tmp_path / "full")]) == 0
    # the pair as a stopped suite leaves it: one of two iterations done, checkpoints, no summaries
    stopped = SeedBatchedPPO("CartPole-v1", [0, 1])
    stopped.learn(512, run_dir=tmp_path / "part" / "ppo" / "CartPole-v1", callback=lambda batched, row: False)
    stopped.close()
    assert all(agent.total_steps == 256 for agent in stopped.agents)
    seed_dirs = [tmp_path / "part" / "ppo" / "CartPole-v1" / f"seed_{seed}" for seed in (0, 1)]
    for folder in seed_dirs:  # a signal stops a run before its final files: only the checkpoints are there
        for name in ("summary.json", "policy.json"):
            (folder / name).unlink(missing_ok=True)  # summary.json: only after the final evaluation
    first_rows = [(folder / "metrics.csv").read_text().splitlines()[1] for folder in seed_dirs]
    assert suite.main([*argv, "--out", str(tmp_path / "part")]) == 0
    # continued, not retrained: the first iteration's row is the stopped run's, wall time included
    assert [(folder / "metrics.csv").read_text().splitlines()[1] for folder in seed_dirs] == first_rows
    for seed in (0, 1):
        full, resumed = (
            load_file(tmp_path / run / "ppo" / "CartPole-v1" / f"seed_{seed}" / "policy.safetensors")
            for run in ("full", "part")
        )
        assert all(torch.equal(full[k], resumed[k]) for k in full)
        summary = json.loads((tmp_path / "part" / "ppo" / "CartPole-v1" / f"seed_{seed}" / "summary.json").read_text())
        assert summary["steps"] == 512


def test_suite_neither_counts_nor_continues_seeds_trained_with_other_settings(tmp_path, capsys):
    suite = load_benchmark("suite")
    out = tmp_path / "suite"
    common = ["--algos", "ppo", "--envs", "CartPole-v1", "--out", str(out), "--workers", "1", "--no-report"]
    assert suite.main([*common, "--steps", "512", "--seeds", "0", "1"]) == 0
    # seed 1 as an older preset left it: another learning rate recorded in its config.json
    config_path = out / "ppo" / "CartPole-v1" / "seed_1" / "config.json"
    recorded = json.loads(config_path.read_text())
    recorded["config"]["lr"] = 0.123
    config_path.write_text(json.dumps(recorded))
    summary = (out / "ppo" / "CartPole-v1" / "seed_1" / "summary.json").read_text()
    capsys.readouterr()

    assert suite.main([*common, "--steps", "512", "--seeds", "0", "1", "--list"]) == 0
    listed = capsys.readouterr()
    assert "| 1 development of 2 asked (1 stale, not counted) |" in listed.out
    assert "seeds [1]" in listed.err and "lr: 0.123 -> 0.001" in listed.err

    # training refuses the pair instead of counting or continuing the stale seed, and says why
    assert suite.main([*common, "--steps", "512", "--seeds", "0", "1", "2"]) == 1
    err = capsys.readouterr().err
    assert "failed: ppo on CartPole-v1: seeds [1]" in err and "move them away" in err
    assert not (out / "ppo" / "CartPole-v1" / "seed_2").exists()
    assert (out / "ppo" / "CartPole-v1" / "seed_1" / "summary.json").read_text() == summary
    rows = json.loads((out / "suite.json").read_text())
    assert rows[0]["seeds_done"] == 1 and rows[0]["seeds_stale"] == [1]

    # another budget than the seeds were trained for makes every seed stale
    assert suite.main([*common, "--steps", "1024", "--seeds", "0", "--list"]) == 0
    assert "steps: 512 -> 1024" in capsys.readouterr().err


def test_suite_refuses_a_pair_folder_another_run_holds(tmp_path, capsys):
    """Two suites (or a suite and `pgrad train --out`) on one pair folder: the second is refused and
    trains nothing, where it used to resume the first one's seeds and write into the same files."""
    from pgrad.experiments.run_folder import RunFolderLock

    suite = load_benchmark("suite")
    out = tmp_path / "suite"
    argv = ["--algos", "ppo", "--envs", "CartPole-v1", "--steps", "512", "--out", str(out), "--workers", "1"]
    with RunFolderLock(out / "ppo" / "CartPole-v1"):  # another process's lock (flock: per open file)
        assert suite.main([*argv, "--seeds", "1000", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "failed: ppo on CartPole-v1:" in err and "is in use by another pgrad train" in err, err
    assert not (out / "ppo" / "CartPole-v1" / "seed_1000").exists()
    # released: the same command trains
    assert suite.main([*argv, "--seeds", "1000", "--no-report"]) == 0
