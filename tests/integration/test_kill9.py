"""kill -9 during training, then ``--resume``: the fast part of benchmarks/faults.py (which runs 50 trials).

Each test is one trial of that script's code: ``pgrad train`` in a process group of its own,
killed with SIGKILL, its files checked (JSON, safetensors, CSVs, TensorBoard events, the
checkpoint, ``pgrad.load``), resumed with the same command plus ``--resume RUN``, and its final
metrics.csv (but timings), episodes.csv, summary.json (but wall_seconds) and policy tensors
compared with an uninterrupted run's. The kills here are injected at exact writes (a
``sitecustomize`` the run's processes load wraps ``os.replace`` and ``open``; pgrad is unchanged),
so every run dies at the same moment on every machine and no test depends on timing; the
benchmark adds kills at random times and while a poller sees a write in progress.

Each of the bugs found this way has its test here (the first ones were fixed in pgrad: a
checkpoint is one file, CSVs are rewritten atomically on resume, config.json comes before the
first checkpoint, a seed-batched group keeps each seed's previous checkpoint until all have their
new one, and summary.json comes after the final evaluation). Two found later have
theirs too: a seed-batched checkpoint folder without state.safetensors while the previous one
was set aside (it is now a hard link swapped in), and seed processes outliving a killed main
process (they now die with it: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark

faults = load_benchmark("faults")

# One or two seconds of training each, a checkpoint every iteration or two.
PPO = faults.Config("ppo", ("ppo", "CartPole-v1", "--seed", "0", "--steps", "2048", "--checkpoint-every", "256"))
A2C = faults.Config("a2c", ("a2c", "CartPole-v1", "--seed", "0", "--steps", "1600", "--checkpoint-every", "160"))
# --workers 1: the three seeds as one seed-batched group in the main process (no spawn start-up)
SEEDS = faults.Config(
    "ppo-seeds",
    ("ppo", "CartPole-v1", "--seeds", "0", "1", "2", "--batched", "--workers", "1", "--steps", "1024")
    + ("--checkpoint-every", "256"),
    seeds=(0, 1, 2),
)
# --workers 2: one spawned process per seed, so that the main process has children to leave behind
SEEDS_IN_PROCESSES = faults.Config(
    "ppo-seeds-processes",
    ("ppo", "CartPole-v1", "--seeds", "0", "1", "--batched", "--workers", "2", "--steps", "1024")
    + ("--checkpoint-every", "256"),
    seeds=(0, 1),
    processes=True,
)


@pytest.fixture(scope="module")
def trial_runner(tmp_path_factory):
    """``run(config, fault, *hooks)``: one trial whose launches kill themselves at ``hooks``
    (``EVENT:PATH:N``, see faults.install_hook), against a reference run made once per config;
    ``main_only``: the child process that reaches the hook kills the main process only."""
    workdir = tmp_path_factory.mktemp("kill9")
    references = {}

    def run(config, fault: str, *hooks: str, main_only: bool = False):
        if config.name not in references:
            references[config.name] = faults.make_reference(config, workdir)
        kills = tuple(faults.Kill(hook=h, main_only=main_only) for h in hooks)
        trial = faults.Trial(f"{config.name}/{fault}/0", config, fault, kills)
        result = faults.run_trial(trial, references[config.name], workdir)
        assert result.kills == len(hooks), result.log  # every injected kill happened
        return result

    return run


def report(result) -> str:
    return "\n".join(result.log)


@pytest.mark.parametrize(
    "config, checkpoint",
    [(PPO, "checkpoint/state.json:3"), (A2C, "checkpoint/state.json:4"), (SEEDS, "seed_2/checkpoint/state.json:2")],
    ids=["ppo", "a2c", "ppo-seeds"],
)
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_numbers(trial_runner, config, checkpoint):
    # for the seed-batched group, seed_2's is the last checkpoint of an iteration: all three are written
    result = trial_runner(config, "random", f"after-replace:{checkpoint}")
    assert result.survived and not result.fresh_restarts, report(result)


def test_a_run_killed_before_a_rename_keeps_the_previous_file_and_resumes(trial_runner):
    result = trial_runner(PPO, "before-rename", "before-replace:checkpoint/state.safetensors:3")
    assert result.mid_write  # the complete temp file is left behind, not renamed
    assert result.survived, report(result)


def test_a_run_killed_between_a_checkpoints_two_files_resumes(trial_runner):
    result = trial_runner(PPO, "between-files", "after-replace:checkpoint/state.safetensors:3")
    assert result.survived, report(result)


def test_a_resume_killed_while_it_rewrites_the_csvs_loses_no_rows(trial_runner):
    # a resume writes the rows it keeps whole and atomically, then appends (it once rewrote them in
    # place, row by row, and a kill meanwhile left the file short of the checkpoint's rows for good)
    result = trial_runner(PPO, "csv-rewrite", "after-replace:checkpoint/state.json:3", "before-replace:metrics.csv:1")
    assert result.survived, report(result)


def test_a_run_killed_before_its_first_complete_checkpoint_resumes(trial_runner):
    result = trial_runner(PPO, "random", "after-replace:checkpoint/state.json:1")
    assert result.survived, report(result)  # the trial itself starts over with --overwrite
    assert not result.fresh_restarts, report(result)  # what is asked: --resume starts it over by itself


def test_a_seed_batched_run_killed_between_two_seeds_checkpoints_resumes(trial_runner):
    result = trial_runner(SEEDS, "random", "after-replace:seed_0/checkpoint/state.json:2")
    assert result.survived, report(result)


def test_a_seed_batched_run_killed_during_its_final_evaluation_resumes(trial_runner):
    result = trial_runner(SEEDS, "random", "after-replace:seed_2/summary.json:1")
    assert result.survived, report(result)


def test_a_seed_batched_checkpoint_folder_loads_at_every_moment(trial_runner):
    result = trial_runner(SEEDS, "between-files", "after-replace:seed_0/checkpoint/previous.safetensors:1")
    assert result.survived, report(result)


def test_a_multi_seed_runs_main_process_killed_leaves_no_process_behind(trial_runner):
    # seed 0's process kills the main process once it has written its second checkpoint; the
    # resume starts at once, as a user's would
    hook = "after-replace:seed_0/checkpoint/state.json:2"
    result = trial_runner(SEEDS_IN_PROCESSES, "main-only", hook, main_only=True)
    assert result.orphans == 0 and result.survived, report(result)
