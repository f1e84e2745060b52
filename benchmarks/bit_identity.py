"""Record short training runs, or compare two recordings: the check that a refactor changed no number.

    python benchmarks/bit_identity.py record OUT_DIR      # train the cases below into OUT_DIR/<case>/
    python benchmarks/bit_identity.py compare OLD NEW     # a table: identical or the first difference

Every case is a whole number of rollouts, so the step rule of ``--steps`` cannot change what runs.
The comparison reads metrics.csv and episodes.csv of every seed folder, ignoring the columns that
measure time (``wall_time``, ``sps``). A run repeats bit for bit on one CPU model, not across them,
so compare recordings made on one machine.

To record with an older checkout, run this file with that checkout first on PYTHONPATH:
``PYTHONPATH=/tmp/old python benchmarks/bit_identity.py record /tmp/old-runs``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

# (name, pgrad train arguments); each --steps is a multiple of the case's rollout size
CASES: list[tuple[str, list[str]]] = [
    ("ppo-cartpole", ["ppo", "CartPole-v1", "--seed", "0", "--steps", "16384"]),
    ("ppo-halfcheetah", ["ppo", "HalfCheetah-v5", "--seed", "0", "--steps", "8192"]),
    ("a2c-hopper", ["a2c", "Hopper-v5", "--seed", "0", "--steps", "8192"]),
    (
        "ppo-batched-3",
        ["ppo", "Pendulum-v1", "--seeds", "0", "1", "2", "--batched", "--workers", "1", "--steps", "8192"],
    ),
    ("ars-pendulum", ["ars", "Pendulum-v1", "--seed", "0", "--steps", "40000", "--set", "n_workers=0"]),
    ("ppo-lstm-cartpolenovel", ["ppo-lstm", "pgrad/CartPoleNoVel-v1", "--seed", "0", "--steps", "8192"]),
    ("reinforce-cartpole", ["reinforce", "CartPole-v1", "--seed", "0", "--steps", "20000"]),
]
TIMING_COLUMNS = {"wall_time", "sps"}


def record(out: Path) -> None:
    for name, arguments in CASES:
        folder = out / name
        command = [
            sys.executable,
            "-m",
            "pgrad.cli",
            "train",
            *arguments,
            "--out",
            str(folder),
            "--quiet",
            "--eval-episodes",
            "2",
        ]
        print(" ".join(command[2:]), flush=True)
        subprocess.run(command, check=True)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def compare(old: Path, new: Path) -> bool:
    all_equal = True
    print("| case | file | rows | result |\n|---|---|---|---|")
    for name, _ in CASES:
        files = sorted(
            p.relative_to(old / name) for p in (old / name).rglob("*.csv") if p.name in ("metrics.csv", "episodes.csv")
        )
        for relative in files:
            before, after = (
                _rows(old / name / relative),
                _rows(new / name / relative) if (new / name / relative).exists() else [],
            )
            difference = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), None)
            if difference is None and len(before) == len(after):
                result = "identical"
            else:
                all_equal = False
                result = f"differs from row {difference if difference is not None else min(len(before), len(after))}"
            print(f"| {name} | {relative} | {len(before)} / {len(after)} | {result} |")
    return all_equal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("record").add_argument("out", type=Path)
    compare_parser = commands.add_parser("compare")
    compare_parser.add_argument("old", type=Path)
    compare_parser.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.out)
        return 0
    return 0 if compare(args.old, args.new) else 1


if __name__ == "__main__":
    sys.exit(main())
