"""benchmarks/ppo_objectives.py on a tiny budget: each objective trains with its own setting,
finished seeds are kept, and the PPO paper's ordering is read from the IQMs."""

from __future__ import annotations

import json

from tests.benchmark_scripts import load_benchmark


def load_objectives():
    return load_benchmark("ppo_objectives")


def test_each_objective_trains_with_its_setting_and_is_tabulated(tmp_path):
    objectives = load_objectives()
    out = tmp_path / "objectives"
    common = ["--envs", "CartPole-v1", "--seeds", "0", "1", "--steps", "256", "--out", str(out), "--workers", "1"]
    assert objectives.main(common) == 0
    for objective in ("clip", "kl_penalty", "none"):
        config = json.loads((out / objective / "CartPole-v1" / "seed_1" / "config.json").read_text())
        assert config["preset"] is None and config["config"]["objective"] == objective
    first = (out / "none" / "CartPole-v1" / "seed_0" / "summary.json").stat().st_mtime_ns
    assert objectives.main(common) == 0  # everything is done: nothing is trained again
    assert (out / "none" / "CartPole-v1" / "seed_0" / "summary.json").stat().st_mtime_ns == first
    rows = json.loads((out / "objectives.json").read_text())
    assert [(r["objective"], r["seeds_done"]) for r in rows] == [("clip", 2), ("kl_penalty", 2), ("none", 2)]
    assert all(r["ci_low"] <= r["iqm"] <= r["ci_high"] for r in rows)
    table = (out / "objectives.md").read_text()
    assert "- CartPole-v1: " in table and "| CartPole-v1 | none | 0: " in table


def test_paper_ordering_is_read_from_the_last_100_iqms():
    objectives = load_objectives()

    def rows(clip, kl_penalty, none, none_seeds_done=5):
        return [
            {"objective": o, "iqm": v, "seeds_done": 5 if o != "none" else none_seeds_done, "seeds_asked": 5}
            for o, v in zip(objectives.PAPER_ORDER, (clip, kl_penalty, none), strict=True)
        ]

    assert objectives.paper_ordering(rows(3.0, 2.0, 1.0)) == "clip > kl_penalty > none: as the paper"
    assert objectives.paper_ordering(rows(2.0, 3.0, 1.0)) == "kl_penalty > clip > none: NOT as the paper"
    assert objectives.paper_ordering(rows(3.0, None, 1.0)) == "-"  # not every objective is done yet
    assert objectives.paper_ordering(rows(3.0, 2.0, 1.0, none_seeds_done=2)) == "-"  # nor every seed
