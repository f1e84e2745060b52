"""Every fault of the issue "Faults and hostile input": kill -9 at any moment of training, then
resume (this file's trials), and every other fault through its tests (benchmarks/faults_pytest.py).

    .venv/bin/python benchmarks/faults.py                     # 50 kill trials over 6 configurations, then the rest
    .venv/bin/python benchmarks/faults.py --quick             # 12 kill trials, two per configuration, then the rest
    .venv/bin/python benchmarks/faults.py --kills-only        # the kill -9 trials and their table only
    .venv/bin/python benchmarks/faults.py --trial ppo/between-files/0 --keep   # replay one kill trial

It prints two tables: the kill -9 trials (below), then one row per other fault (disk full and I/O
errors, env failures, hangs, Ray workers killed, two runs on one folder, hostile files, endless
episodes, resumed tuning, fuzzed input): see benchmarks/faults_pytest.py for its columns.

Every configuration (PPO, A2C, ARS in-process and with rollout workers, PPO-LSTM, seed-batched
PPO over three seeds) trains a few seconds with a small ``--checkpoint-every``, first once
uninterrupted (the reference), then once per trial: ``python -m pgrad.cli train ...`` in its own
process group, SIGKILLed at a moment the trial's fault picks, then continued with the same
command plus ``--resume RUN``, possibly killed again, until one last resume runs to its end.

The faults (rows of the table):

- ``random``: SIGKILL to every process of the run (its process group, as the OOM killer of a
  cgroup or ``kill -9 -PGID`` does) at a random time, 1 to 3 times in a row (the resumes too).
  One kill in four is uniform over the reference run's whole duration, start-up included (where
  nothing is written yet); the others are uniform from its first write to its end.
- ``checkpoint``: SIGKILL as soon as this process sees the n-th new temp file of a checkpoint
  write (``RUN/checkpoint/.state.*.tmp``, polled as fast as Python can); the kill landed inside
  the write when the temp file is still there afterwards (counted in "mid-write").
- ``policy``: the same, for the final ``policy.safetensors``/``policy.json`` writes.
- ``between-files``: the run kills itself (SIGKILL to its group) right after the n-th rename of
  ``checkpoint/state.safetensors``, before ``state.json`` follows: the moment a checkpoint is
  half new, half old. Injected through a ``sitecustomize`` that wraps ``os.replace`` in the
  run's processes (:func:`install_hook`); nothing of pgrad is changed.
- ``before-rename``: the run kills itself just before the rename of one of its atomic writes
  (drawn uniformly from every write the reference run made: config, checkpoints, policy,
  summary), leaving a complete temp file and the previous file.
- ``csv-rewrite``: the run kills itself after a complete checkpoint; the resume kills itself
  as it first rewrites ``metrics.csv`` or ``episodes.csv`` (a resume rewrites the CSVs from the
  rows the checkpoint covers): right after opening it for writing in place, or just before the
  rename of an atomic write, whichever it does; then a last resume.
- ``main-only`` (configurations with child processes): SIGKILL to the main process only, as
  ``kill -9 PID`` does, at a time uniform over the first 80% of the part of the reference run
  that writes files (so that its children are at work); the resume starts at once. Child
  processes of the killed run still alive when that resume has ended are "orphans" (they
  outlived a whole resume, writing into the run folder or hanging); they get until they use no
  CPU for 2 s (at most a minute) before they are killed and the files checked.

After every kill the trial checks that each file in RUN loads: JSON parses, safetensors loads,
CSV rows are whole, TensorBoard event files read, ``pgrad.io.load_checkpoint`` accepts the
checkpoint and the CSVs hold the rows it expects, ``pgrad.load`` accepts a saved policy. Temp
files (``.*.tmp``) and ``.lock`` are not data and are not loaded. After the last resume it also
compares the result with the reference: ``metrics.csv`` (every column but the timings
``wall_time`` and ``sps``), ``episodes.csv``, ``summary.json`` (but ``wall_seconds``) and every
tensor of ``policy.safetensors`` (``torch.equal``), per seed folder.

A trial *survived* if the last resume exited 0 with identical numbers and every file loaded
after every kill; its *data is lost* if a file failed to load or a number differs. A resume that
is refused while every file loads is neither (listed under failures). A run killed before it had
a complete checkpoint has nothing to resume: if ``--resume`` refuses it, the trial runs the
same command again without it (adding ``--overwrite`` when pgrad asks for it), counts a
"fresh restart" and reports the refusal. "max resume s" is the longest wall time of a last
resume (kill -9 has no "time to fail cleanly": the process just dies).

The plan is fixed by ``--seed``: which fault each trial gets, which write an injected kill
hits (counted in the reference run's writes, which do not depend on timing) and where in the
run a timed kill falls, as a fraction of the reference's measured duration. Each trial draws
from a generator of its own, so ``--trial ID`` replays one exactly as the full run planned it.
Whether an external kill lands inside a write depends on timing; injected kills do not.
Linux only (process groups, ``/proc``). Runs take a few seconds each and run one at a time:
about 10-20 minutes for 50 trials on 2 cores, more on a loaded machine.
"""

from __future__ import annotations

import argparse
import builtins
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMING_COLUMNS = ("wall_time", "sps")  # metrics.csv columns that are timings, not numbers of the run
CHECKPOINT_FILES = ("state.json", "state.safetensors")  # a checkpoint's files in RUN/checkpoint/
HOOK_VARIABLE = "PGRAD_FAULTS_HOOK"  # JSON {"log": path or null, "kill": {"event", "path", "nth"} or null}
MODULE_VARIABLE = "PGRAD_FAULTS_MODULE"  # this file, for the sitecustomize of the run's processes
ORPHAN_GRACE_SECONDS = 60.0  # at most this long a main-only trial lets orphaned children work before killing them

FAULTS = {
    "random": "kill -9 at a random time",
    "checkpoint": "kill -9 during a checkpoint write",
    "policy": "kill -9 during the policy write",
    "between-files": "kill -9 between a checkpoint's two files",
    "before-rename": "kill -9 before a temp file's rename",
    "csv-rewrite": "kill -9 while a resume rewrites the CSVs",
    "main-only": "kill -9 of the main process only",
}
# The order in which each configuration takes its trials (round-robin over configurations), so
# that any --trials gives every configuration the same mix; main-only falls back to random where
# there is no child process.
FAULT_ORDER = [
    "random",
    "checkpoint",
    "between-files",
    "main-only",
    "before-rename",
    "csv-rewrite",
    "policy",
    "main-only",
    "random",
    "checkpoint",
]


@dataclass(frozen=True)
class Config:
    """One ``pgrad train`` command under test (``args`` follow ``pgrad train``, without ``--out``)."""

    name: str
    args: tuple[str, ...]
    seeds: tuple[int, ...] = ()  # a multi-seed run's seeds: its files are in RUN/seed_<S>/
    processes: bool = False  # trains in child processes too (main-only applies)

    @property
    def folders(self) -> list[str]:
        """The folders inside RUN that hold one seed's run files ("" for RUN itself)."""
        return [f"seed_{seed}" for seed in self.seeds] or [""]


COMMON = ("--quiet", "--eval-episodes", "5")
# Budgets of a few seconds and a checkpoint every iteration or two, so that many checkpoints
# are written and a uniform kill time lands in training as often as in start-up.
CONFIGS = [
    Config(
        "ppo-seeds",
        ("ppo", "CartPole-v1", "--seeds", "0", "1", "2", "--batched", "--steps", "8192", "--checkpoint-every", "512"),
        seeds=(0, 1, 2),
        processes=True,  # one spawned process per group of seeds
    ),
    Config(
        "ars-workers",
        ("ars", "Pendulum-v1", "--seed", "0", "--steps", "32000", "--checkpoint-every", "1600", "--workers", "2"),
        processes=True,
    ),
    Config("ppo", ("ppo", "CartPole-v1", "--seed", "0", "--steps", "16384", "--checkpoint-every", "512")),
    Config("a2c", ("a2c", "CartPole-v1", "--seed", "0", "--steps", "16000", "--checkpoint-every", "480")),
    Config(
        "ars",
        ("ars", "Pendulum-v1", "--seed", "0", "--steps", "48000", "--checkpoint-every", "1600", "--set", "n_workers=0"),
    ),
    Config(
        "ppo-lstm",
        ("ppo-lstm", "pgrad/CartPoleNoVel-v1", "--seed", "0", "--steps", "4096", "--checkpoint-every", "512"),
    ),
]


# -- the hook inside the run's processes ---------------------------------------------------------


def install_hook(spec_json: str) -> None:
    """Wrap ``os.replace`` and ``open`` in this process to log atomic writes and CSV truncations, or
    to SIGKILL this process's group at one of them.

    Runs in every Python process of a run under test (the ``sitecustomize`` written by
    :func:`hook_environment`). ``kill`` is ``{"event", "path", "nth", "target"}``: at this process's nth
    ``event`` on the absolute ``path``, where the event is ``before-replace`` (the temp file is
    complete, the rename not done), ``after-replace`` (renamed), ``truncate`` (a CSV opened for
    writing, so emptied) or ``rewrite`` (the first two of these, whichever comes: a file
    rewritten in place or atomically). The run was started in its own process group, so the
    group is the run; ``target`` ``"parent"`` kills the parent process only instead (a child of
    the main process kills it at a moment the child chooses, as a ``kill -9 PID`` would).
    """
    spec = json.loads(spec_json)
    log_path: str | None = spec.get("log")
    kill: dict[str, Any] = spec.get("kill") or {"event": None, "path": None, "nth": 0}
    count = 0

    def event(name: str, path: Any) -> None:
        nonlocal count
        path = os.path.abspath(os.fspath(path))
        if log_path is not None and name != "before-replace":
            # one write(2) on an O_APPEND file: lines of several processes never interleave
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{time.time():.6f}\t{name}\t{path}\n".encode())
            finally:
                os.close(fd)
        wanted = ("truncate", "before-replace") if kill["event"] == "rewrite" else (kill["event"],)
        if name in wanted and path == kill["path"]:
            count += 1
            if count == kill["nth"]:
                if kill.get("target") == "parent":  # a child kills the run's main process only
                    os.kill(os.getppid(), signal.SIGKILL)
                else:
                    os.killpg(os.getpgrp(), signal.SIGKILL)

    real_replace, real_open = os.replace, builtins.open

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        event("before-replace", dst)
        real_replace(src, dst, *args, **kwargs)
        event("after-replace", dst)

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(".csv"):
            event("truncate", file)
        return handle

    os.replace = replace
    builtins.open = open_


SITECUSTOMIZE = f"""\
# Written by benchmarks/faults.py: installs its kill/log hook in every Python process of a run.
import importlib.util, os, sys
if os.environ.get("{HOOK_VARIABLE}"):
    _spec = importlib.util.spec_from_file_location("pgrad_faults_hook", os.environ["{MODULE_VARIABLE}"])
    _module = sys.modules["pgrad_faults_hook"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install_hook(os.environ["{HOOK_VARIABLE}"])
"""


def hook_environment(workdir: Path, log: Path | None = None, kill: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment that makes a ``pgrad train`` log its writes to ``log`` and/or kill itself at ``kill``."""
    site = workdir / "hook-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    # multiprocessing's spawned children inherit the environment, so they run the hook too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env[MODULE_VARIABLE] = str(Path(__file__).resolve())
    env[HOOK_VARIABLE] = json.dumps({"log": str(log) if log else None, "kill": kill})
    return env


# -- trials ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """How one launch of ``pgrad train`` dies (exactly one way is set)."""

    after: float | None = None  # external: SIGKILL the process group this many seconds after the start
    watch: str | None = None  # external: SIGKILL the group at the nth new temp file named .<watch>*.tmp
    nth: int = 1
    hook: str | None = None  # injected: the run kills its own group at "EVENT:PATH:N", PATH in RUN (install_hook)
    main_only: bool = False  # SIGKILL the main process only, not its children (with hook: a child kills it)

    def describe(self) -> str:
        if self.hook is not None:
            return f"{'a child kills the main process' if self.main_only else 'kill itself'} at {self.hook}"
        if self.watch is not None:
            return f"kill at the {self.nth}. temp file .{self.watch}*.tmp seen"
        return f"kill {'the main process' if self.main_only else 'the group'} at {self.after:.3f} s"


@dataclass(frozen=True)
class Trial:
    """One configuration, one fault: launch i is killed by ``kills[i]``, then a last resume runs to its end."""

    id: str
    config: Config
    fault: str
    kills: tuple[Kill, ...]


@dataclass
class Reference:
    """The uninterrupted run a configuration's trials are compared with."""

    run: Path
    seconds: float  # wall time of the whole process, start-up included
    first_write: float  # seconds from the start to the first file written (the end of start-up)
    writes: list[tuple[str, str]]  # (event, path relative to run) of every atomic write and CSV truncation, in order

    def kill_time(self, rng: random.Random) -> float:
        """A moment to kill a launch: uniform over the whole run (start-up included) one time in
        four, else uniform over the part that writes files, where a kill can do harm."""
        return rng.uniform(0.0 if rng.random() < 0.25 else self.first_write, self.seconds)


@dataclass
class TrialResult:
    """What happened in one trial."""

    trial: Trial
    kills: int = 0  # kills delivered (a run may finish before its kill is due)
    mid_write: int = 0  # of them: injected at a write, or a temp file of the write was left behind
    fresh_restarts: int = 0  # --resume refused a run with no complete checkpoint: started over
    orphans: int = 0  # processes of a main-only kill still alive when the last resume ended
    problems: list[str] = field(default_factory=list)  # files that did not load, numbers that differ
    failure: str | None = None  # the last resume failed while every file loaded
    resume_seconds: float = 0.0  # wall time of the last resume
    log: list[str] = field(default_factory=list)

    @property
    def data_lost(self) -> bool:
        return bool(self.problems)

    @property
    def survived(self) -> bool:
        return not self.problems and self.failure is None


def train_command(config: Config, run: Path, resume: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """``python -m pgrad.cli train ...`` for ``config`` into ``run`` (``--resume run`` added on resume)."""
    command = [sys.executable, "-m", "pgrad.cli", "train", *config.args, *COMMON, "--out", str(run), *extra]
    return command + (["--resume", str(run)] if resume else [])


def plan_trials(
    n_trials: int, seed: int, configs: list[Config], references: dict[str, Reference], faults: list[str] | None = None
) -> list[Trial]:
    """``n_trials`` trials, round-robin over ``configs``, each configuration through FAULT_ORDER."""
    order = [fault for fault in FAULT_ORDER if faults is None or fault in faults] or list(faults or [])
    trials, taken = [], Counter()
    for index in range(n_trials):
        config = configs[index % len(configs)]
        fault = order[(index // len(configs)) % len(order)]
        if fault == "main-only" and not config.processes:
            fault = "random"
        number = taken[(config.name, fault)]
        taken[(config.name, fault)] += 1
        trial_id = f"{config.name}/{fault}/{number}"
        trials.append(plan_trial(trial_id, config, fault, references[config.name], seed))
    return trials


def plan_trial(trial_id: str, config: Config, fault: str, reference: Reference, seed: int) -> Trial:
    """The kills of one trial, drawn from a generator of its own (``--seed`` and the trial id)."""
    rng = random.Random(f"{seed}/{trial_id}")
    folder = rng.choice(config.folders)
    prefix = f"{folder}/" if folder else ""
    replaced = Counter(path for event, path in reference.writes if event == "after-replace")
    # the tensor file is written by every checkpoint, whichever file commits it
    checkpoints = replaced[f"{prefix}checkpoint/state.safetensors"]
    if fault == "random":
        kills = tuple(Kill(after=reference.kill_time(rng)) for _ in range(rng.choice([1, 1, 2, 3])))
    elif fault == "main-only":
        # while it trains (children exist and the run is not about to end): the first 80% of its writing part
        start, end = reference.first_write, reference.seconds
        kills = (Kill(after=rng.uniform(start, start + 0.8 * (end - start)), main_only=True),)
    elif fault == "checkpoint":
        # the poller sees a fraction of the temp files (most live for a millisecond): aim early enough
        kills = (Kill(watch="state.", nth=rng.randint(1, max(1, checkpoints // 2))),)
    elif fault == "policy":
        kills = (Kill(watch="policy.", nth=rng.randint(1, 2 * len(config.folders))),)
    elif fault == "between-files":
        nth = rng.randint(1, max(1, replaced[f"{prefix}checkpoint/state.safetensors"]))
        kills = (Kill(hook=f"after-replace:{prefix}checkpoint/state.safetensors:{nth}"),)
    elif fault == "before-rename":
        writes = [path for event, path in reference.writes if event == "after-replace"]
        index = rng.randrange(len(writes))
        nth = writes[: index + 1].count(writes[index])
        kills = (Kill(hook=f"before-replace:{writes[index]}:{nth}"),)
    elif fault == "csv-rewrite":
        # a complete checkpoint that is neither the first (no rows yet) nor the last
        nth = rng.randint(2, max(2, checkpoints - 1))
        csv_name = rng.choice(["metrics.csv", "episodes.csv"])
        kills = (
            Kill(hook=f"after-replace:{prefix}checkpoint/state.json:{nth}"),
            Kill(hook=f"rewrite:{prefix}{csv_name}:1"),
        )
    else:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    return Trial(trial_id, config, fault, kills)


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Launch:
    """One ``pgrad train`` process's end."""

    pgid: int  # its process group (its pid: each launch starts a session)
    returncode: int
    seconds: float
    killed: bool
    mid_write: bool
    stderr: str
    orphans: list[int] = field(default_factory=list)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            members.append(int(entry))
    return members


def cpu_ticks(pids: list[int]) -> int:
    """User + system CPU time of ``pids`` (clock ticks; ended processes count 0)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def wait_until_idle(pgid: int, quiet_seconds: float = 2.0) -> float:
    """Wait until process group ``pgid`` has ended or used no CPU for ``quiet_seconds`` (at most
    ORPHAN_GRACE_SECONDS); return the seconds waited."""
    start = last_change = time.monotonic()
    ticks = -1
    while time.monotonic() - start < ORPHAN_GRACE_SECONDS:
        members = group_members(pgid)
        if not members:
            break
        now_ticks = cpu_ticks(members)
        if now_ticks != ticks:
            ticks, last_change = now_ticks, time.monotonic()
        elif time.monotonic() - last_change >= quiet_seconds:
            break
        time.sleep(0.2)
    return time.monotonic() - start


def kill_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL process group ``pgid`` (one this script started) and wait until none of it is left."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not group_members(pgid) or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def temp_files(run: Path, config: Config, prefix: str = "") -> set[Path]:
    """Temp files of atomic writes (``.<name>.<random>.tmp``) in the run's folders and checkpoints."""
    found = set()
    for folder in config.folders:
        for directory in (run / folder, run / folder / "checkpoint"):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            found.update(directory / n for n in names if n.startswith("." + prefix) and n.endswith(".tmp"))
    return found


def launch(
    command: list[str], config: Config, run: Path, kill: Kill | None, env: dict[str, str] | None = None
) -> Launch:
    """Run ``command`` in its own process group and kill it as ``kill`` says (None: let it finish).

    ``env``: the environment (default this one's); an injected kill (``kill.hook``) adds the hook to it.
    """
    env = dict(os.environ) if env is None else env
    if kill is not None and kill.hook is not None:
        event, path, nth = kill.hook.split(":")
        target = "parent" if kill.main_only else "group"
        spec = {"event": event, "path": str((run / path).resolve()), "nth": int(nth), "target": target}
        env = hook_environment(run.parent, kill=spec)
    before = temp_files(run, config)
    stderr_file = tempfile.TemporaryFile()
    start = time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file, start_new_session=True
    )
    killed = False
    if kill is None or kill.hook is not None:
        process.wait()  # an injected kill shows as returncode -9
        killed = process.returncode == -signal.SIGKILL
    elif kill.watch is not None:
        seen: set[Path] = set()
        while process.poll() is None:
            new = temp_files(run, config, kill.watch) - before
            if new - seen:
                seen |= new
                if len(seen) >= kill.nth:
                    os.killpg(process.pid, signal.SIGKILL)
                    killed = True
                    break
        process.wait()
    else:
        try:
            process.wait(timeout=kill.after)
        except subprocess.TimeoutExpired:
            if kill.main_only:
                os.kill(process.pid, signal.SIGKILL)
            else:
                os.killpg(process.pid, signal.SIGKILL)
            killed = True
            process.wait()
    seconds = time.monotonic() - start
    orphans: list[int] = []
    if kill is not None and kill.main_only:
        time.sleep(0.2)  # children notice their parent's death, if they do, within this
        orphans = group_members(process.pid)
    else:
        kill_group(process.pid)  # a run that ended may leave nothing; a killed one must leave nothing
    stderr_file.seek(0)
    stderr = stderr_file.read().decode(errors="replace")
    stderr_file.close()
    # landed inside a write: injected at one, or a temp file of it was left behind
    injected = kill is not None and kill.hook is not None and not kill.main_only
    mid_write = killed and (bool(temp_files(run, config) - before) or injected)
    return Launch(process.pid, process.returncode, seconds, killed, mid_write, stderr, orphans)


# -- checks ------------------------------------------------------------------------------------


def check_files(run: Path, config: Config) -> list[str]:
    """Every file in ``run`` that fails to load, one line each (temp files and ``.lock`` are not data)."""
    from safetensors.torch import load_file

    problems = []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        name = path.relative_to(run)
        if path.name == ".lock" or (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue
        try:
            if "tb" in name.parts:
                check_event_file(path)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".safetensors":
                load_file(path)
            elif path.suffix == ".csv":
                read_csv(path)
        except Exception as exc:
            problems.append(f"{name} does not load: {type(exc).__name__}: {first_line(exc)}")
    for folder in config.folders:
        problems += check_run_folder(run / folder, run)
    return problems


def check_run_folder(folder: Path, run: Path) -> list[str]:
    """One seed's folder: its checkpoint loads and its CSVs hold the rows it expects; its policy loads."""
    import pgrad
    from pgrad.io import load_checkpoint

    problems = []
    name = folder.relative_to(run)
    # state.json is the last file of a checkpoint in every layout pgrad has had (a tensor file
    # without it may be an interrupted first checkpoint, which holds nothing yet)
    if (folder / "checkpoint" / "state.json").is_file():
        try:
            state, _ = load_checkpoint(folder / "checkpoint")
            logged = state.get("logger", {})
            for csv_name, key in (("metrics.csv", "metrics_rows"), ("episodes.csv", "episode_rows")):
                expected = logged.get(key, 0)
                rows = len(read_csv(folder / csv_name)) if (folder / csv_name).is_file() else 0
                if rows < expected:
                    problems.append(f"{name / csv_name} has {rows} rows; its checkpoint expects {expected}")
        except Exception as exc:
            problems.append(f"{name / 'checkpoint'} does not load: {first_line(exc)}")
    if (folder / "policy.json").is_file():
        try:
            pgrad.load(folder).close()
        except Exception as exc:
            problems.append(f"pgrad.load({name}) fails: {first_line(exc)}")
    return problems


def check_event_file(path: Path) -> None:
    """Read a TensorBoard event file to its end (a record cut by a kill ends it, as TensorBoard reads it)."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    for _ in RawEventFileLoader(str(path)).Load():
        pass


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV, each checked to have every column (ValueError for a row cut short)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows, start=2):
        if None in row.values() or None in row:
            raise ValueError(f"line {number} does not have the header's columns")
    return rows


def first_line(exc: BaseException) -> str:
    """An error's first line."""
    return (str(exc).strip().splitlines() or [""])[0]


def compare_runs(run: Path, reference: Path, config: Config) -> list[str]:
    """Where ``run``'s final numbers differ from ``reference``'s (empty: identical)."""
    import torch
    from safetensors.torch import load_file

    differences = []
    for folder in config.folders:
        ours, theirs = run / folder, reference / folder
        for csv_name, ignored in (("metrics.csv", TIMING_COLUMNS), ("episodes.csv", ())):
            try:
                a, b = read_csv(ours / csv_name), read_csv(theirs / csv_name)
            except (OSError, ValueError) as exc:
                differences.append(f"{folder or '.'}/{csv_name}: {first_line(exc)}")
                continue
            strip = (
                [{k: v for k, v in row.items() if k not in ignored} for row in a],
                [{k: v for k, v in row.items() if k not in ignored} for row in b],
            )
            if strip[0] != strip[1]:
                differences.append(f"{folder or '.'}/{csv_name} differs: {first_difference(*strip)}")
        try:
            a_tensors, b_tensors = load_file(ours / "policy.safetensors"), load_file(theirs / "policy.safetensors")
            if a_tensors.keys() != b_tensors.keys():
                differences.append(f"{folder or '.'}/policy.safetensors has other tensors")
            else:
                unequal = [k for k in a_tensors if not torch.equal(a_tensors[k], b_tensors[k])]
                if unequal:
                    differences.append(f"{folder or '.'}/policy.safetensors differs in {', '.join(unequal)}")
        except Exception as exc:
            differences.append(f"{folder or '.'}/policy.safetensors: {first_line(exc)}")
    summaries = [""] + (config.folders if config.seeds else [])
    for folder in summaries:
        try:
            a, b = (
                without_wall_seconds(json.loads((r / folder / "summary.json").read_text())) for r in (run, reference)
            )
            if a != b:
                keys = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
                shown = ", ".join(f"{k}: {short(a.get(k))} vs {short(b.get(k))}" for k in keys[:3])
                differences.append(f"{folder or '.'}/summary.json differs ({shown}, then the reference's)")
        except (OSError, ValueError) as exc:
            differences.append(f"{folder or '.'}/summary.json: {first_line(exc)}")
    return differences


def short(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def first_difference(a: list[dict[str, str]], b: list[dict[str, str]]) -> str:
    """Where two CSVs' rows first differ, in words."""
    if len(a) != len(b):
        return f"{len(a)} rows, the reference has {len(b)}"
    for number, (row_a, row_b) in enumerate(zip(a, b), start=2):
        for key in row_b:
            if row_a.get(key) != row_b[key]:
                return f"line {number}, {key}: {row_a.get(key)} vs {row_b[key]} in the reference"
    return "columns differ"


def without_wall_seconds(obj: Any) -> Any:
    """A summary without its timings (every ``wall_seconds`` key, at any depth)."""
    if isinstance(obj, dict):
        return {k: without_wall_seconds(v) for k, v in obj.items() if k != "wall_seconds"}
    if isinstance(obj, list):
        return [without_wall_seconds(v) for v in obj]
    return obj


def has_checkpoint(run: Path, config: Config) -> bool:
    """Whether ``--resume`` has something to continue: a seed folder (RUN itself for one seed) with
    config.json and a checkpoint file, what ``--resume`` looks for."""
    return any(
        (run / f / "config.json").is_file() and any((run / f / "checkpoint" / n).is_file() for n in CHECKPOINT_FILES)
        for f in config.folders
    )


# -- running -----------------------------------------------------------------------------------


def make_reference(config: Config, workdir: Path) -> Reference:
    """Train ``config`` uninterrupted into ``workdir/reference-<name>``, logging its writes."""
    run = workdir / f"reference-{config.name}"
    if run.exists():
        shutil.rmtree(run)
    log = workdir / f"reference-{config.name}.writes"
    log.unlink(missing_ok=True)
    start = time.time()
    result = launch(train_command(config, run), config, run, None, hook_environment(workdir, log=log))
    if result.returncode != 0:
        raise RuntimeError(f"reference run {config.name} failed ({result.returncode}): {result.stderr.strip()}")
    writes, times = [], []
    for line in log.read_text().splitlines():
        when, event, path = line.split("\t")
        if Path(path).is_relative_to(run.resolve()):  # libraries may write caches elsewhere
            writes.append((event, str(Path(path).relative_to(run.resolve()))))
            times.append(float(when) - start)
    return Reference(run, result.seconds, min(times), writes)


def run_trial(trial: Trial, reference: Reference, workdir: Path) -> TrialResult:
    """Kill and resume one run as ``trial`` says, check its files after every kill and its numbers at the end."""
    config = trial.config
    run = workdir / trial.id.replace("/", "-")
    if run.exists():
        shutil.rmtree(run)
    result = TrialResult(trial)
    orphan_groups: list[tuple[int, float]] = []  # (process group, when its main process was killed)
    for index, kill in enumerate(trial.kills):
        ended = launch(train_command(config, run, resume=index > 0), config, run, kill)
        what = "killed" if ended.killed else f"ended with {ended.returncode} before its kill"
        result.log.append(f"launch {index} ({kill.describe()}): {what} after {ended.seconds:.2f} s")
        if ended.killed:
            result.kills += 1
            result.mid_write += ended.mid_write
        if ended.orphans:
            orphan_groups.append((ended.pgid, time.monotonic()))
            result.log.append(f"  {len(ended.orphans)} child processes alive 0.2 s later: {ended.orphans}")
        if not ended.killed and ended.returncode != 0:
            result.log.append(f"  stderr: {last_line(ended.stderr)}")
        if ended.orphans:
            # children still write: what a check sees now may be a write in progress, not a loss
            result.log.append("  files not checked until the orphans are done")
            continue
        for problem in check_files(run, config):
            if problem not in result.problems:
                result.problems.append(problem)
                result.log.append(f"  after launch {index}: {problem}")
    resumable = has_checkpoint(run, config)
    # orphans of a killed main process may still write: then a refused resume is no proof that
    # there was nothing to resume, and counts as a failure
    orphans_at_work = any(group_members(pgid) for pgid, _ in orphan_groups)
    final = launch(train_command(config, run, resume=True), config, run, None)
    result.resume_seconds = final.seconds
    result.log.append(f"last resume: exit {final.returncode} after {final.seconds:.2f} s")
    if final.returncode != 0 and orphans_at_work:
        result.log.append("  (refused while processes of the killed run were still alive)")
    elif final.returncode != 0 and not resumable:
        # nothing to resume: the run starts over with its own command (as a user would have to)
        result.fresh_restarts += 1
        result.log.append(f"  --resume refused a run without a checkpoint: {last_line(final.stderr)}")
        final = launch(train_command(config, run), config, run, None)
        if final.returncode == 2 and "--overwrite" in final.stderr:
            result.log.append(f"  the same command without --resume refused too: {last_line(final.stderr)}")
            final = launch(train_command(config, run, extra=("--overwrite",)), config, run, None)
        result.resume_seconds = final.seconds
        result.log.append(f"  started over: exit {final.returncode} after {final.seconds:.2f} s")
    for pgid, killed_at in orphan_groups:  # let orphans finish what they write, then check what is left
        outlived = group_members(pgid)
        result.orphans += len(outlived)
        if outlived:
            wait_until_idle(pgid)
            alive = group_members(pgid)
            result.log.append(
                f"  orphans: {len(outlived)} processes outlived the resume; {len(alive)} still alive and idle "
                f"{time.monotonic() - killed_at:.0f} s after the kill: killed"
            )
        kill_group(pgid)
    for problem in check_files(run, config):
        if problem not in result.problems:
            result.problems.append(problem)
            result.log.append(f"  after the last resume: {problem}")
    if final.returncode != 0:
        result.failure = f"the last resume exited {final.returncode}: {last_line(final.stderr)}"
        result.log.append(f"  {result.failure}")
    else:
        differences = compare_runs(run, reference.run, config)
        result.problems += differences
        result.log += [f"  {d}" for d in differences] or ["  identical to the reference"]
    return result


def last_line(text: str) -> str:
    """The last non-blank line of a process's stderr (pgrad's one-line error)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def table(results: list[TrialResult]) -> str:
    """The Markdown table: per fault, trials, survived, data lost, longest last resume, and what the kills did
    (delivered of planned: a run may end before its kill is due; "mid-write": landed inside a write)."""

    def row(title: str, rows: list[TrialResult]) -> str:
        cells = [
            title,
            len(rows),
            sum(r.survived for r in rows),
            sum(r.data_lost for r in rows),
            f"{max((r.resume_seconds for r in rows), default=0.0):.1f}",
            f"{sum(r.kills for r in rows)}/{sum(len(r.trial.kills) for r in rows)} ({sum(r.mid_write for r in rows)})",
            sum(r.fresh_restarts for r in rows),
            sum(r.orphans for r in rows),
        ]
        return "| " + " | ".join(str(cell) for cell in cells) + " |"

    lines = [
        "| fault | trials | survived | data lost | max resume s | kills/planned (mid-write) | fresh restarts "
        "| orphans |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        row(title, [r for r in results if r.trial.fault == f])
        for f, title in FAULTS.items()
        if any(r.trial.fault == f for r in results)
    ]
    lines.append(row("**all**", results))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="trials in all, round-robin over the configurations")
    parser.add_argument("--quick", action="store_true", help="two trials per configuration (12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times and trial plans")
    parser.add_argument("--configs", nargs="+", choices=[c.name for c in CONFIGS], help="only these configurations")
    parser.add_argument("--faults", nargs="+", choices=list(FAULTS), help="only these faults")
    parser.add_argument("--trial", action="append", metavar="ID", help="replay only this trial (repeatable)")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--json", type=Path, help="also write every trial's result here")
    parser.add_argument("--kills-only", action="store_true", help="only the kill -9 trials, not the other faults")
    args = parser.parse_args(argv)

    configs = [c for c in CONFIGS if args.configs is None or c.name in args.configs]
    if args.trial:
        configs = [c for c in configs if any(t.split("/")[0] == c.name for t in args.trial)]
    n_trials = 2 * len(configs) if args.quick else args.trials
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pgrad-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        references = {}
        for config in configs:
            references[config.name] = make_reference(config, workdir)
            ref = references[config.name]
            print(
                f"reference {config.name}: {ref.seconds:.1f} s, first write at {ref.first_write:.1f} s, "
                f"{len(ref.writes)} writes",
                file=sys.stderr,
            )
        if args.trial:
            by_name = {c.name: c for c in configs}
            trials = []
            for trial_id in args.trial:
                name, fault = trial_id.split("/")[:2]
                trials.append(plan_trial(trial_id, by_name[name], fault, references[name], args.seed))
        else:
            trials = plan_trials(n_trials, args.seed, configs, references, args.faults)
        results = []
        for trial in trials:
            result = run_trial(trial, references[trial.config.name], workdir)
            results.append(result)
            verdict = "survived" if result.survived else ("DATA LOST" if result.data_lost else "FAILED")
            print(f"{trial.id}: {verdict}", file=sys.stderr)
            for line in result.log:
                print(f"    {line}", file=sys.stderr)
            if not args.keep and result.survived:
                shutil.rmtree(workdir / trial.id.replace("/", "-"), ignore_errors=True)
        print(table(results))
        failures = [r for r in results if not r.survived]
        if failures:
            print("\nfailures (replay one with: python benchmarks/faults.py --seed S --trial ID --keep):")
            for r in failures:
                print(f"- {r.trial.id}: " + "; ".join(r.problems or [r.failure or ""]))
                print(f"  command: {' '.join(train_command(r.trial.config, Path('RUN'))[1:])}")
                print(f"  kills: {', '.join(k.describe() for k in r.trial.kills)}")
        print(f"\n{len(results)} trials, seed {args.seed}, {time.monotonic() - started:.0f} s")
        other_faults = []
        if not (args.kills_only or args.trial):
            sys.path.insert(0, str(Path(__file__).resolve().parent))  # faults_pytest.py is beside this file
            import faults_pytest

            other_faults = faults_pytest.run_all()
            print(f"\nThe other faults (their tests):\n\n{faults_pytest.table(other_faults)}")
            print(f"\nall faults: {time.monotonic() - started:.0f} s")
        if args.json:
            args.json.write_text(
                json.dumps(
                    [
                        {
                            "id": r.trial.id,
                            "fault": r.trial.fault,
                            "survived": r.survived,
                            "data_lost": r.data_lost,
                            "problems": r.problems,
                            "failure": r.failure,
                            "kills": r.kills,
                            "mid_write": r.mid_write,
                            "fresh_restarts": r.fresh_restarts,
                            "orphans": r.orphans,
                            "resume_seconds": r.resume_seconds,
                            "log": r.log,
                        }
                        for r in results
                    ],
                    indent=2,
                )
            )
        return 0 if all(r.survived for r in results) and not any(r.failed for r in other_faults) else 1
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
