"""The compiled policy step (pgrad/numpy_twin/compiled.py) must act as the numpy twin does.

numba is in the test extra, so these run wherever the suite runs; the rest of the suite then acts
through the compiled step too (tests/unit/test_fast_inference.py compares it with torch).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgrad.numpy_twin import NumpyActorCritic, compiled
from pgrad.numpy_twin.policy import compiled_kernels
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import RolloutCollector

BOX_OBS = spaces.Box(-np.inf, np.inf, (17,), np.float64)
CASES = {
    "gaussian-tanh": (BOX_OBS, spaces.Box(-1.0, 1.0, (6,), np.float32), dict(activation="tanh")),
    "gaussian-relu-uneven": (
        BOX_OBS,
        spaces.Box(-2.0, 2.0, (3,), np.float32),
        dict(activation="relu", log_std_init=0.7, hidden_sizes=(32, 16, 8)),
    ),
    "gaussian-wide-no-normaliser": (
        BOX_OBS,
        spaces.Box(-1.0, 1.0, (6,), np.float32),
        dict(activation="tanh", hidden_sizes=(256, 256), normalize_obs=False),
    ),
    "categorical": (spaces.Box(-np.inf, np.inf, (4,), np.float32), spaces.Discrete(3), dict(activation="tanh")),
    "categorical-many": (BOX_OBS, spaces.Discrete(9), dict(activation="relu", hidden_sizes=(40,))),
    # no critic (REINFORCE): the compiled step reads a C-ordered copy of the actor
    "categorical-no-critic": (BOX_OBS, spaces.Discrete(5), dict(activation="relu", with_critic=False)),
    "gaussian-no-critic": (BOX_OBS, spaces.Box(-1.0, 1.0, (2,), np.float32), dict(with_critic=False)),
}


def _policy(case: str, seed: int = 0) -> ActorCriticPolicy:
    obs_space, action_space, kwargs = CASES[case]
    torch.manual_seed(seed)
    policy = ActorCriticPolicy(obs_space, action_space, **kwargs)
    if policy.obs_normalizer is not None:
        policy.obs_normalizer.update(np.random.default_rng(seed).normal(3.0, 2.0, (50, policy.obs_size)))
    with torch.no_grad():  # non-trivial weights, so that every term matters
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return policy


def _twins(policy: ActorCriticPolicy, monkeypatch) -> tuple[NumpyActorCritic, NumpyActorCritic]:
    """(compiled, numpy) twins of ``policy``, both fused as a collector builds them."""
    compiled_twin = NumpyActorCritic(policy, fused=True)
    monkeypatch.setenv("PGRAD_NUMBA", "0")
    numpy_twin = NumpyActorCritic(policy, fused=True)
    monkeypatch.delenv("PGRAD_NUMBA")
    assert compiled_twin.compiled is not None and numpy_twin.compiled is None
    return compiled_twin, numpy_twin


def _state(policy: ActorCriticPolicy) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in policy.state_dict().items()}


@pytest.mark.parametrize("rows", [1, 16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_step_equals_the_numpy_twin(case, rows, monkeypatch):
    policy = _policy(case)
    compiled_twin, numpy_twin = _twins(policy, monkeypatch)
    before = _state(policy)
    generator_rng = np.random.default_rng(1)
    for step in range(5):  # several steps: the statistics move between them
        raw = generator_rng.normal(3.0, 4.0, (rows, policy.obs_size))
        raw[0, 0] = 1e6 if step == 2 else raw[0, 0]  # clipped by the normaliser
        start = _state(policy)
        torch.manual_seed(step)
        obs_c, action_c, log_prob_c, value_c = compiled_twin.normalize_and_act(raw)
        after_compiled, draw_after_compiled = _state(policy), torch.rand(3)
        policy.load_state_dict(start)
        torch.manual_seed(step)
        obs_n, action_n, log_prob_n, value_n = numpy_twin.normalize_and_act(raw)
        # the statistics and the normalised observations: the same operations, equal to the bit
        for name, tensor in policy.state_dict().items():
            assert torch.equal(tensor, after_compiled[name]), name
        np.testing.assert_array_equal(obs_c, obs_n)
        # the generator advanced by the same draws
        assert torch.equal(torch.rand(3), draw_after_compiled)
        for name, (c, n) in {"action": (action_c, action_n), "log_prob": (log_prob_c, log_prob_n)}.items():
            assert c.dtype == n.dtype and c.shape == n.shape, name
        if policy.discrete:
            np.testing.assert_array_equal(action_c, action_n)
        else:
            np.testing.assert_allclose(action_c, action_n, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(log_prob_c, log_prob_n, rtol=1e-5, atol=1e-5)
        if policy.critic is None:
            assert value_c is None and value_n is None
            continue
        np.testing.assert_allclose(value_c, value_n, rtol=1e-5, atol=1e-5)
        # V(s') for bootstraps is the computation that stored V(s), to the bit
        np.testing.assert_array_equal(compiled_twin.value(obs_c), value_c)
    assert any(not torch.equal(tensor, before[name]) for name, tensor in policy.state_dict().items()) or (
        policy.obs_normalizer is None
    )


def _same_step(compiled_twin: NumpyActorCritic, numpy_twin: NumpyActorCritic, raw: np.ndarray) -> None:
    """One step of each from the same statistics and generator state gives the same log-probabilities."""
    policy = compiled_twin.policy
    start = _state(policy)
    torch.manual_seed(5)
    log_prob_c = compiled_twin.normalize_and_act(raw)[2]
    policy.load_state_dict(start)
    torch.manual_seed(5)
    log_prob_n = numpy_twin.normalize_and_act(raw)[2]
    np.testing.assert_allclose(log_prob_c, log_prob_n, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["gaussian-tanh", "categorical", "categorical-no-critic"])
def test_compiled_step_sees_weights_changed_in_place(case, monkeypatch):
    policy = _policy(case)
    compiled_twin, numpy_twin = _twins(policy, monkeypatch)
    raw = np.random.default_rng(3).normal(size=(4, policy.obs_size))
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.mul_(1.5).add_(0.1)  # an optimiser step: in place
    compiled_twin.refresh()
    numpy_twin.refresh()
    _same_step(compiled_twin, numpy_twin, raw)
    policy.actor_body[1] = torch.nn.ReLU() if case != "categorical-no-critic" else torch.nn.Tanh()
    if policy.critic is not None:
        policy.critic[1] = policy.actor_body[1]  # the same activation on both: still fused
    compiled_twin.refresh()  # a replaced part: rebuilt, still compiled
    numpy_twin.refresh()
    assert compiled_twin.compiled is not None
    _same_step(compiled_twin, numpy_twin, raw)


def test_compiled_categorical_refuses_non_finite_probabilities(monkeypatch):
    policy = _policy("categorical")
    compiled_twin, numpy_twin = _twins(policy, monkeypatch)
    with torch.no_grad():
        policy.head.logits.bias.fill_(float("nan"))
    compiled_twin.refresh()
    numpy_twin.refresh()
    raw = np.zeros((2, policy.obs_size))
    for twin in (compiled_twin, numpy_twin):
        with pytest.raises(ValueError, match="probability tensor contains either inf, nan"):
            twin.normalize_and_act(raw)


def test_compiled_tanh_is_within_8_ulp_of_the_exact_tanh():
    tanh = compiled.tanh_array
    grid = np.linspace(-12.0, 12.0, 4_000_001).astype(np.float32)
    tiny = np.geomspace(1e-30, 1e-2, 200_001).astype(np.float32)
    x = np.concatenate([grid, tiny, -tiny, np.float32([0.0, -0.0, 7.9053111, 1e30, -1e30, np.inf, -np.inf])])
    out = np.empty_like(x)
    tanh(x, out)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 8.0
    assert np.all(np.abs(out) <= 1.0) and np.array_equal(np.signbit(out), np.signbit(x))
    nan = np.float32([np.nan])
    tanh(nan, out[:1])
    assert np.isnan(out[0])


def test_pgrad_numba_0_turns_the_compiled_step_off(monkeypatch):
    from pgrad.envs import make_vector_env

    envs = make_vector_env("CartPole-v1", 2, seed=0)
    policy = ActorCriticPolicy(envs.single_observation_space, envs.single_action_space)
    from pgrad.algos.base import versions

    assert RolloutCollector(envs, policy, seed=0).fast.compiled is not None
    assert "numba" in versions()  # config.json records what the run's rounding depends on
    monkeypatch.setenv("PGRAD_NUMBA", "0")
    assert compiled_kernels() is None
    assert RolloutCollector(envs, policy, seed=0).fast.compiled is None
    assert "numba" not in versions()
    envs.close()


def test_every_blas_library_is_held_to_the_configured_threads():
    """numba's products go through SciPy's OpenBLAS, a library beside numpy's: an agent's thread
    setting (torch_threads, 1 by default) must hold for both, or SciPy's would start a thread per
    core. In a fresh process, where nothing loaded either library before the agent."""
    import subprocess
    import sys

    script = """
import json, pgrad
from threadpoolctl import threadpool_info
agent = pgrad.PPO("Pendulum-v1", seed=0, n_steps=64, batch_size=64, n_epochs=1)
agent.learn(128, quiet=True)
print(json.dumps([(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    blas = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("scipy_openblas" in path for path, _ in blas), blas
    assert all(threads == 1 for _, threads in blas), blas


# -- the collector's step: env_action and the bookkeeping ----------------------------------------


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (-0.4, 2.5), ([-3.0, 0.0, -1e-3], [1.0, 7.5, 1e-3])])
def test_compiled_env_action_equals_the_policy_s_to_the_bit(low, high):
    space = spaces.Box(np.broadcast_to(np.float32(low), 3), np.broadcast_to(np.float32(high), 3), dtype=np.float32)
    policy = ActorCriticPolicy(BOX_OBS, space)
    assert NumpyActorCritic(policy, fused=True)._bounds[0]  # the compiled step maps this space's actions
    raw = np.random.default_rng(0).normal(0.0, 1.5, (64, 3)).astype(np.float32)
    raw[0] = [np.nan, np.inf, -np.inf]
    raw[1] = [-0.0, 1.0, -1.0]
    expected = policy.env_action(raw)
    got = np.empty_like(raw)
    compiled.rescale_into(raw, space.low, space.high, got)
    assert expected.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))  # NaN and -0.0 included


def test_env_action_is_the_policy_s_where_the_compiled_step_does_not_map_it():
    from pgrad.rollout import RolloutBuffers

    for space in (spaces.Box(-1.0, 1.0, (2,), np.float64), spaces.Box(-np.inf, np.inf, (2,), np.float32)):
        policy = ActorCriticPolicy(BOX_OBS, space)
        twin = NumpyActorCritic(policy, fused=True)
        assert not twin._bounds[0]
        buffers = RolloutBuffers.allocate(1, 2, policy)
        env_action = twin.act_into(np.ones((2, policy.obs_size)), buffers, 0)
        np.testing.assert_array_equal(env_action, policy.env_action(buffers.action[0]))
        assert env_action.dtype == space.dtype


def _bookkeeping_case(rng, n: int, next_step: bool, reward_dtype) -> dict:
    return dict(
        observation=rng.normal(0.0, 1.0, (n, 3)),
        reward=rng.normal(0.0, 3.0, n).astype(reward_dtype),
        terminated=rng.random(n) < 0.3,
        truncated=rng.random(n) < 0.3,
        pending_reset=(rng.random(n) < 0.4) if next_step else np.zeros(n, bool),
        episode_return=rng.normal(0.0, 50.0, n),
        episode_length=rng.integers(0, 30, n),
    )


@pytest.mark.parametrize("reward_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("next_step", [False, True])
def test_compiled_bookkeeping_equals_the_numpy_one_to_the_bit(next_step, reward_dtype):
    from pgrad.rollout import record_transition

    rng = np.random.default_rng(1)
    n, steps = 7, 40
    states = {}
    for name, function in (("numpy", record_transition), ("compiled", compiled.record_transition)):
        rng = np.random.default_rng(1)
        counters = _bookkeeping_case(rng, n, next_step, reward_dtype)
        buffers = [np.zeros((steps, n), np.float32), np.zeros((steps, n), bool), np.zeros((steps, n), bool)]
        buffers += [np.ones((steps, n), bool), np.zeros((steps, n), np.int64)]
        returned = []
        for t in range(steps):
            step = _bookkeeping_case(rng, n, next_step, reward_dtype)
            returned.append(
                function(
                    t, step["observation"], step["reward"], step["terminated"], step["truncated"], next_step,
                    counters["pending_reset"], counters["episode_return"], counters["episode_length"], *buffers,
                )
            )  # fmt: skip
            ended = buffers[1][t] | buffers[2][t]
            counters["episode_return"][ended] = 0.0  # as the collector does after logging the episodes
            counters["episode_length"][ended] = 0
        states[name] = (returned, counters, buffers)
    (numpy_returned, numpy_counters, numpy_buffers), (returned, counters, buffers) = states["numpy"], states["compiled"]
    assert returned == numpy_returned
    assert any(n_ended for _, n_ended in returned) and (not next_step or any(v < n for v, _ in returned))
    for name in numpy_counters:
        np.testing.assert_array_equal(counters[name], numpy_counters[name])
    for got, expected in zip(buffers, numpy_buffers):
        np.testing.assert_array_equal(got, expected)
    assert numpy_buffers[3].all() != next_step  # NEXT_STEP reset steps were marked invalid


@pytest.mark.parametrize("bad", ["reward", "observation", "observation-float32"])
@pytest.mark.parametrize("function", ["numpy", "compiled"])
def test_bookkeeping_reports_a_non_finite_number_and_records_nothing(function, bad):
    from pgrad.rollout import record_transition

    record = record_transition if function == "numpy" else compiled.record_transition
    returns, lengths = np.array([1.0, 2.0]), np.array([3, 4])
    reward_buffer = np.zeros((1, 2), np.float32)
    observation = np.zeros((2, 3), np.float32 if bad.endswith("float32") else np.float64)
    reward = np.array([1.0, 2.0])
    if bad == "reward":
        reward[1] = np.nan
    else:
        observation[1, 2] = -np.inf
    result = record(
        0, observation, reward, np.zeros(2, bool), np.zeros(2, bool), False, np.zeros(2, bool),
        returns, lengths, reward_buffer, np.zeros((1, 2), bool), np.zeros((1, 2), bool), np.ones((1, 2), bool),
        np.zeros((1, 2), np.int64),
    )  # fmt: skip
    assert result == (-1, 0)
    np.testing.assert_array_equal(returns, [1.0, 2.0])
    np.testing.assert_array_equal(lengths, [3, 4])
    assert not reward_buffer.any()


def test_compiled_advantage_normalisation_equals_numpy_s_to_the_bit():
    from pgrad.losses import normalize_advantages

    rng = np.random.default_rng(0)
    # sizes around numpy's pairwise-summation blocks (8 partial sums, runs of 128, splits above)
    for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 1000, 2048, 4095]:
        for scale in (1e-3, 1.0, 1e3):
            advantages = (rng.standard_normal(n) * scale + rng.uniform(-5, 5)).astype(np.float32)
            expected = normalize_advantages(advantages)
            got = compiled.normalize_advantages(advantages)
            np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32), err_msg=f"n={n}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_act_into_writes_the_rollout_row_and_returns_the_env_action(case, monkeypatch):
    from pgrad.rollout import RolloutBuffers

    policy = _policy(case)
    compiled_twin, numpy_twin = _twins(policy, monkeypatch)
    raw = np.random.default_rng(3).normal(2.0, 3.0, (5, policy.obs_size))
    written, start = {}, _state(policy)
    for name, twin in (("compiled", compiled_twin), ("numpy", numpy_twin)):
        policy.load_state_dict(start)  # each from the same statistics (they move with every step)
        torch.manual_seed(4)
        buffers = RolloutBuffers.allocate(3, 5, policy)
        env_action = twin.act_into(raw, buffers, 1)
        # the env action is the policy's map of the action written into the row, to the bit
        np.testing.assert_array_equal(env_action, policy.env_action(buffers.action[1]))
        assert not buffers.obs[[0, 2]].any() and not buffers.log_prob[[0, 2]].any()  # only row 1 written
        written[name] = buffers
    np.testing.assert_array_equal(written["compiled"].obs, written["numpy"].obs)
    np.testing.assert_allclose(written["compiled"].log_prob, written["numpy"].log_prob, atol=1e-5)
    np.testing.assert_allclose(written["compiled"].value, written["numpy"].value, atol=1e-5)
    if policy.discrete:
        np.testing.assert_array_equal(written["compiled"].action, written["numpy"].action)
    else:
        np.testing.assert_allclose(written["compiled"].action, written["numpy"].action, atol=1e-5)
