"""benchmarks/trpo_sb3.py's translation of pgrad's TRPO presets into sb3-contrib's arguments: the
comparison is only fair if sb3-contrib gets the RL Zoo's numbers in its own units."""

import tomllib

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def trpo_sb3():
    return load_benchmark("trpo_sb3")


def test_every_preset_maps_and_kl_units_convert(trpo_sb3):
    presets = tomllib.loads(trpo_sb3.PRESETS.read_text())
    for preset in presets.values():
        trpo_sb3.sb3_arguments(preset, 1)  # refuses (SystemExit) a key it cannot map
    # HalfCheetah-v5: 6 action dimensions, the Zoo's target_kl 0.04 and cg_damping 0.1
    arguments = trpo_sb3.sb3_arguments(presets["HalfCheetah-v5"], 6)
    assert arguments["target_kl"] == 0.04 and arguments["cg_damping"] == 0.1
    assert arguments["n_critic_updates"] == 20 and arguments["learning_rate"] == 1e-3
    # pgrad's own tuning is not passed on: sb3-contrib runs the Zoo's entry
    assert "log_std_init" not in arguments and "policy_kwargs" not in arguments


def test_unknown_preset_key_is_refused(trpo_sb3):
    with pytest.raises(SystemExit, match="cannot map"):
        trpo_sb3.sb3_arguments({"clip_range": 0.2}, 1)
