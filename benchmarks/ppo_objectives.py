"""The PPO paper's comparison of surrogate objectives (Schulman et al. 2017, sec. 6.1, Table 1):
clipped, adaptive-KL penalty and neither, at the paper's MuJoCo settings, on fresh seeds.

Run from a fresh clone (after `make install`):

    .venv/bin/python benchmarks/ppo_objectives.py                       # 2 envs x 3 objectives x 5 seeds, 1M
    .venv/bin/python benchmarks/ppo_objectives.py --envs Hopper-v5 --objectives clip none --steps 200000
    .venv/bin/python benchmarks/ppo_objectives.py --list                # the table of what is done

The setting is the paper's Table 3 (1 env x 2048 steps, 10 epochs of minibatch 64, Adam 3e-4
decayed linearly to 0, gamma 0.99, GAE lambda 0.95, 2x64 tanh networks, no entropy bonus), which
are pgrad's PPO defaults: every run uses `--preset none` and sets only `objective`. The
defaults of the two objectives are the paper's best settings of each in its Table 1: `clip_coef`
0.2, and `kl_target` (d_targ) 0.01 with beta starting at 1 and halved or doubled by its 1.5 rule.
pgrad's defaults add the running observation normalisation the paper's code (OpenAI baselines)
had. The paper ran 7 envs x 3 seeds and scored each env from
0 (random policy) to 1 (the best setting); here each env gets its own IQM over the seeds, so the
ordering is read per env.

Each (objective, env) trains into OUT/OBJECTIVE/ENV/seed_S/ exactly as
`pgrad train ppo ENV --preset none --set objective=OBJECTIVE --seeds ... --workers W` would (the
clipped objective as seed-batched models, each seed learning as it would alone). It is resumable
like benchmarks/suite.py: finished seeds are kept, stopped seeds continue from their checkpoint,
and seeds trained with other settings are named and neither counted nor continued.

Printed (and written to OUT/objectives.md): per env and objective the IQM with its 95% stratified
bootstrap interval over seeds of the last-100 training return and of the deterministic
evaluation, the per-seed numbers, the core-hours, and whether the paper's ordering
(clip >= kl_penalty >= none, by last-100 IQM) holds on that env.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import suite  # benchmarks/suite.py: the seed roles, stale-seed checks and cost records are the suite's

OBJECTIVES = ["clip", "kl_penalty", "none"]
ENVS = ["HalfCheetah-v5", "Hopper-v5"]
DEFAULT_SEEDS = suite.EVALUATION_SEEDS[:5]  # never used to choose pgrad's defaults
STEPS = 1_000_000
PAPER_ORDER = ("clip", "kl_penalty", "none")  # best first (the paper's Table 1)


def settings(objective: str, steps: int) -> dict:
    """What a seed trained here records: no preset, the defaults with ``objective``, the budget."""
    from pgrad.algos import ALGORITHMS

    return {
        "preset": None,
        "config": ALGORITHMS["ppo"].Config.build({"objective": objective}).to_dict(),
        "steps": steps,
    }


def train(objective: str, env: str, seeds: list[int], steps: int, out: Path, workers: int) -> list[str]:
    """Train the seeds of one (objective, env) that have not finished; return error lines."""
    stale = suite.seeds_trained_otherwise(settings(objective, steps), seeds, out)
    if stale:
        return [suite.stale_message("ppo", f"{env} ({objective})", out, stale)]
    missing = [s for s in seeds if suite.seed_summary(out / f"seed_{s}") is None]
    if not missing:
        return []
    return suite.while_locked(
        out, f"{objective} on {env}", lambda: _train_locked(objective, env, missing, steps, out, workers)
    )


def _train_locked(objective: str, env: str, missing: list[int], steps: int, out: Path, workers: int) -> list[str]:
    """:func:`train` once the folder is locked: the ``missing`` seeds, resumed where they have a checkpoint."""
    from pgrad.experiments.runner import TrainSpec, run_seeds
    from pgrad.experiments.seed_batched import run_seeds_batched

    print(f"ppo objective={objective} on {env}: training seeds {missing}", file=sys.stderr)
    resume = any((out / f"seed_{s}" / "checkpoint" / "state.json").is_file() for s in missing)
    spec = TrainSpec(
        algo="ppo",
        env=env,
        seed=missing[0],
        out=str(out),
        steps=steps,
        preset="none",
        overrides={"objective": objective},
        quiet=True,
        resume=resume,
    )
    started = time.perf_counter()
    if objective == "clip" and len(missing) > 1:  # only the clipped objective is seed-batched
        _, errors = run_seeds_batched(spec, missing, workers)
    else:
        _, errors = run_seeds(spec, missing, workers=workers)
    suite.add_cost(out, time.perf_counter() - started, min(workers, len(missing)), missing)
    return errors


def row(objective: str, env: str, seeds: list[int], steps: int, out: Path) -> dict:
    """The suite's table row (IQMs with intervals, per-seed numbers, core-hours) of one (objective,
    env), from the seeds trained with today's settings; its goal verdict is the preset's, not used here."""
    stale = suite.seeds_trained_otherwise(settings(objective, steps), seeds, out)
    return {"objective": objective, **suite.table_row("ppo", env, seeds, out, stale)}


def paper_ordering(rows: list[dict]) -> str:
    """Whether one env's rows rank as the paper's Table 1 (by last-100 IQM); '-' until every
    objective has all its seeds (a partial row's IQM is not the row's)."""
    complete = {r["objective"]: r.get("iqm") for r in rows if r["seeds_done"] == r["seeds_asked"]}
    if any(complete.get(o) is None for o in PAPER_ORDER):
        return "-"
    ranked = sorted(PAPER_ORDER, key=lambda o: -complete[o])
    order = " > ".join(ranked)
    return f"{order}: {'as the paper' if tuple(ranked) == PAPER_ORDER else 'NOT as the paper'}"


def format_tables(rows: list[dict]) -> str:
    lines = [
        "| env | objective | seeds | last-100 IQM [95% CI] | eval IQM [95% CI] | core-h |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        done = f"{r['seeds_done']}/{r['seeds_asked']}"
        hours = "-" if r["core_hours"] is None else f"{r['core_hours']:.2f}"
        lines.append(
            f"| {r['env']} | {r['objective']} | {done} | {_interval(r, 'iqm')} | {_interval(r, 'eval_iqm')} | {hours} |"
        )
    lines += ["", "Ordering by last-100 IQM (the paper: clip > kl_penalty > none):", ""]
    for env in dict.fromkeys(r["env"] for r in rows):
        lines.append(f"- {env}: {paper_ordering([r for r in rows if r['env'] == env])}")
    lines += ["", "Per seed (last-100 / eval):", "", "| env | objective | " + "per seed |", "|---|---|---|"]
    for r in rows:
        cells = ", ".join(f"{s['seed']}: {_number(s['last_100'])} / {_number(s['eval'])}" for s in r["per_seed"])
        lines.append(f"| {r['env']} | {r['objective']} | {cells or '-'} |")
    return "\n".join(lines)


def _interval(r: dict, name: str) -> str:
    if name not in r:
        return "-"
    prefix = "" if name == "iqm" else "eval_"  # the suite's keys: iqm, ci_low, eval_iqm, eval_ci_low
    return f"{r[name]:.1f} [{r[f'{prefix}ci_low']:.1f}, {r[f'{prefix}ci_high']:.1f}]"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES, choices=OBJECTIVES)
    parser.add_argument("--seeds", nargs="+", default=[str(s) for s in DEFAULT_SEEDS], help="integers, 'eval' or 'dev'")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", default="runs/ppo-objectives")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes at once")
    parser.add_argument("--list", action="store_true", help="print the table of what is done; train nothing")
    args = parser.parse_args(argv)
    seeds = suite.parse_seeds(args.seeds)
    root = Path(args.out)
    errors: list[str] = []
    if not args.list:
        for env in args.envs:
            for objective in args.objectives:
                errors += train(objective, env, seeds, args.steps, root / objective / env, args.workers)
    rows = [row(o, env, seeds, args.steps, root / o / env) for env in args.envs for o in args.objectives]
    table = format_tables(rows)
    print(table)
    if not args.list:
        command = "python benchmarks/ppo_objectives.py " + " ".join(sys.argv[1:] if argv is None else argv)
        root.mkdir(parents=True, exist_ok=True)
        (root / "objectives.md").write_text(f"Command: `{command}`\n\n{table}\n")
        (root / "objectives.json").write_text(json.dumps(rows, indent=2))
    for line in errors:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
