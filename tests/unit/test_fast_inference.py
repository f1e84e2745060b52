"""The collector's numpy fast path must act as the plain torch path does (pgrad/numpy_twin/policy.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgrad.envs import make_vector_env
from pgrad.normalize import RewardScaler
from pgrad.numpy_twin import NumpyActorCritic, unsupported_reason
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import RolloutCollector

BOX_OBS = spaces.Box(-np.inf, np.inf, (17,), np.float64)
CASES = {
    "gaussian-tanh": (BOX_OBS, spaces.Box(-1.0, 1.0, (6,), np.float32), dict(activation="tanh")),
    "gaussian-relu-wide": (
        BOX_OBS,
        spaces.Box(-2.0, 2.0, (3,), np.float32),
        dict(activation="relu", log_std_init=0.7, hidden_sizes=(32, 16, 8)),
    ),
    "categorical": (spaces.Box(-np.inf, np.inf, (4,), np.float32), spaces.Discrete(3), dict(activation="tanh")),
    "categorical-no-critic": (BOX_OBS, spaces.Discrete(5), dict(activation="relu", with_critic=False)),
}


def _policy(case: str, seed: int = 0) -> ActorCriticPolicy:
    obs_space, action_space, kwargs = CASES[case]
    torch.manual_seed(seed)
    policy = ActorCriticPolicy(obs_space, action_space, **kwargs)
    # Non-trivial statistics and weights, so that every term of the forward pass matters.
    policy.obs_normalizer.update(np.random.default_rng(seed).normal(3.0, 2.0, (50, policy.obs_size)))
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return policy


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_forward_matches_torch(case):
    policy = _policy(case)
    fast = NumpyActorCritic(policy)
    raw = np.random.default_rng(1).normal(3.0, 4.0, (16, policy.obs_size)).astype(np.float64)
    raw[0, 0] = 1e6  # clipped by the normaliser

    obs_np = fast.normalize(raw)
    obs_t = policy.normalize(policy.obs_to_tensor(raw))
    np.testing.assert_array_equal(obs_np, obs_t.numpy())  # same float32 elementwise arithmetic

    torch.manual_seed(7)
    action_t, log_prob_t, value_t = policy.act(obs_t)
    torch.manual_seed(7)
    action_np, log_prob_np, value_np = fast.act(obs_np)
    assert action_np.dtype == action_t.numpy().dtype and action_np.shape == tuple(action_t.shape)
    if policy.discrete:
        np.testing.assert_array_equal(action_np, action_t.numpy())
    else:
        np.testing.assert_allclose(action_np, action_t.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_prob_np, log_prob_t.numpy(), rtol=1e-6, atol=1e-5)
    if value_t is None:
        assert value_np is None
    else:
        np.testing.assert_allclose(value_np, value_t.numpy(), rtol=1e-6, atol=1e-6)
    # the torch generator advanced by the same amount on both paths
    torch.manual_seed(7)
    policy.act(obs_t)
    after_plain = torch.rand(3)
    torch.manual_seed(7)
    fast.act(obs_np)
    assert torch.equal(torch.rand(3), after_plain)


def test_update_statistics_identical():
    plain, fast_policy = _policy("gaussian-tanh"), _policy("gaussian-tanh")
    fast = NumpyActorCritic(fast_policy)
    for batch in np.random.default_rng(2).normal(0.0, 5.0, (30, 1, 17)):
        plain.normalize(plain.obs_to_tensor(batch), update=True)
        fast.normalize(batch, update=True)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, fast_policy.state_dict()[name]), name


@pytest.mark.parametrize(
    "env_id, n_envs, reward_scaling", [("CartPole-v1", 3, False), ("Pendulum-v1", 1, True), ("Pendulum-v1", 2, False)]
)
def test_collected_rollouts_equal_with_fast_path_on_and_off(env_id, n_envs, reward_scaling):
    rollouts = {}
    for fast in (True, False):
        envs = make_vector_env(env_id, n_envs, seed=0)
        torch.manual_seed(0)
        policy = ActorCriticPolicy(envs.single_observation_space, envs.single_action_space)
        scaler = RewardScaler(n_envs, 0.99) if reward_scaling else None
        collector = RolloutCollector(envs, policy, seed=0, reward_scaler=scaler, fast_inference=fast)
        assert (collector.fast is not None) == fast
        torch.manual_seed(123)
        # two rollouts with a weight change between them: the fast path must see new weights
        first, log = collector.collect(150)
        with torch.no_grad():
            for parameter in policy.parameters():
                parameter.mul_(1.1)
        second, _ = collector.collect(60)
        # torch's generator moved on by the same draws (the fast path draws a rollout's noise first)
        rollouts[fast] = (first, second, log, policy.state_dict(), torch.rand(3))
        envs.close()
    assert torch.equal(rollouts[True][4], rollouts[False][4])
    for fast_rollout, plain_rollout in zip(rollouts[True][:2], rollouts[False][:2]):
        for name in (
            "obs",
            "actions",
            "log_probs",
            "values",
            "rewards",
            "terminated",
            "truncated",
            "next_values",
            "valid",
            "time_in_episode",
        ):
            a, b = getattr(fast_rollout, name), getattr(plain_rollout, name)
            assert a.dtype == b.dtype and a.shape == b.shape, name
            if a.dtype in (torch.bool, torch.long):
                assert torch.equal(a, b), name
            else:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    assert rollouts[True][2].returns == pytest.approx(rollouts[False][2].returns, rel=1e-5)
    for name, tensor in rollouts[True][3].items():  # normaliser and reward statistics
        torch.testing.assert_close(tensor, rollouts[False][3][name], rtol=1e-6, atol=1e-6, msg=name)


def test_unsupported_policies_use_the_torch_path():
    box = spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert not NumpyActorCritic.supports(ActorCriticPolicy(BOX_OBS, box, action_dist="truncated_normal"))
    assert not NumpyActorCritic.supports(ActorCriticPolicy(BOX_OBS, box, state_dependent_std=True))
    assert not NumpyActorCritic.supports(ActorCriticPolicy(BOX_OBS, box, activation="gelu"))
    assert not NumpyActorCritic.supports(ActorCriticPolicy(spaces.Discrete(4), box))  # one-hot observations

    class Subclass(ActorCriticPolicy):
        pass

    assert not NumpyActorCritic.supports(Subclass(BOX_OBS, box))
    assert "Subclass" in unsupported_reason(Subclass(BOX_OBS, box))
    assert "TruncatedNormalHead" in unsupported_reason(ActorCriticPolicy(BOX_OBS, box, action_dist="truncated_normal"))


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", {}),
        ("Pendulum-v1", {"normalize_obs": True}),
        ("Pendulum-v1", {"action_dist": "truncated_normal"}),
    ],
)
def test_predict_fast_path_matches_torch(env_id, overrides):
    import pgrad

    agent = pgrad.PPO(env_id, seed=0, preset=None, n_steps=64, batch_size=32, n_epochs=1, **overrides)
    agent.learn(64, quiet=True)  # moves weights and observation statistics away from their init
    obs = np.stack([agent.observation_space.sample() for _ in range(12)])
    policy = agent.policy
    for deterministic in (True, False):
        torch.manual_seed(5)
        fast = agent.predict(obs, deterministic=deterministic)
        torch.manual_seed(5)
        with torch.no_grad():
            dist = policy.distribution(policy.normalize(policy.obs_to_tensor(obs)))
            raw = policy.head.deterministic(dist) if deterministic else dist.sample()
        plain = policy.env_action(raw.numpy())
        assert fast.dtype == plain.dtype and fast.shape == plain.shape
        np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(agent.predict(obs[0]), agent.predict(obs[:1])[0])
    agent.close()


def test_predict_sees_weights_changed_in_place_and_replaced_parts():
    import pgrad

    agent = pgrad.PPO("Pendulum-v1", seed=0, preset=None, n_steps=64, batch_size=32)
    obs = np.stack([agent.observation_space.sample() for _ in range(4)])
    before = agent.predict(obs)
    with torch.no_grad():
        agent.policy.head.loc.bias.add_(0.5)  # in place: the twin's views see it
        agent.policy.head.std.log_std.fill_(-6.0)  # the std is re-read for stochastic actions
    policy = agent.policy
    with torch.no_grad():
        expected = policy.head.deterministic(policy.distribution(policy.normalize(policy.obs_to_tensor(obs))))
    np.testing.assert_allclose(agent.predict(obs), policy.env_action(expected.numpy()), rtol=1e-5, atol=1e-6)
    assert not np.allclose(agent.predict(obs), before)
    torch.manual_seed(0)
    noisy = agent.predict(obs, deterministic=False)
    assert (
        0 < np.abs(noisy - agent.predict(obs)).max() < 0.05
    )  # std exp(-6) * (half-range 2) ~ 0.005; stale std 1 would give ~2
    agent.policy.actor_body = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.GELU())  # now unsupported
    with torch.no_grad():
        expected = policy.head.deterministic(policy.distribution(policy.normalize(policy.obs_to_tensor(obs))))
    np.testing.assert_allclose(agent.predict(obs), policy.env_action(expected.numpy()), rtol=1e-5, atol=1e-6)
    agent.close()


def _fused_outputs(twin: NumpyActorCritic, obs: np.ndarray) -> np.ndarray:
    from pgrad.numpy_twin.layers import forward

    return forward(twin.fused, obs)


@pytest.mark.parametrize("case", ["gaussian-tanh", "categorical"])
def test_fused_refresh_in_place_equals_a_rebuild(case):
    """The fused copy refreshed in place (same modules and storages) holds exactly what a new
    fuse would; a replaced layer or parameter, or a parameter whose data moved, is read anew."""
    policy = _policy(case)
    twin = NumpyActorCritic(policy, fused=True)
    fused_arrays = [layer.weight_t for layer in twin.fused if hasattr(layer, "weight_t")]
    obs = np.random.default_rng(2).normal(size=(9, policy.obs_size)).astype(np.float32)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.mul_(1.5).add_(0.1)  # an optimiser step: in place
    twin.refresh()
    assert all(a is layer.weight_t for a, layer in zip(fused_arrays, [x for x in twin.fused if hasattr(x, "weight_t")]))
    np.testing.assert_array_equal(_fused_outputs(twin, obs), _fused_outputs(NumpyActorCritic(policy, fused=True), obs))
    # the fused and the separate networks differ only by BLAS's summation order
    np.testing.assert_allclose(twin.act(obs)[2], NumpyActorCritic(policy).value(obs), rtol=1e-5, atol=1e-5)

    with torch.no_grad():
        policy.critic[0].weight = torch.nn.Parameter(policy.critic[0].weight * 2.0)  # a new parameter
    twin.refresh()
    np.testing.assert_array_equal(_fused_outputs(twin, obs), _fused_outputs(NumpyActorCritic(policy, fused=True), obs))
    policy.actor_body[0] = torch.nn.Linear(policy.obs_size, policy.actor_body[0].out_features)  # a new layer
    twin.refresh()
    np.testing.assert_array_equal(_fused_outputs(twin, obs), _fused_outputs(NumpyActorCritic(policy, fused=True), obs))
    policy.critic[0].weight.data = policy.critic[0].weight.data * 3.0  # the same parameter, new storage
    twin.refresh()
    np.testing.assert_array_equal(_fused_outputs(twin, obs), _fused_outputs(NumpyActorCritic(policy, fused=True), obs))
    policy.actor_body[1] = policy.critic[1] = torch.nn.ReLU()  # another activation: the same shapes, other maths
    twin.refresh()
    np.testing.assert_array_equal(_fused_outputs(twin, obs), _fused_outputs(NumpyActorCritic(policy, fused=True), obs))


def test_parameter_walk_is_torchs_order():
    from pgrad.numpy_twin.layers import all_parameters

    for case in CASES:
        policy = _policy(case)
        policy.critic_copy = policy.critic  # a module registered twice: its parameters once, as torch does
        assert [id(p) for p in all_parameters(policy)] == [id(p) for p in policy.parameters()]


@pytest.mark.parametrize("seed", range(4))
def test_categorical_sample_is_torch_multinomials_draw(seed):
    """The numpy twin's categorical draw picks torch.multinomial's action for every row and leaves
    the generator where torch.multinomial leaves it: over shapes, sharp and flat distributions,
    zero-probability actions, float32 and float64, a given generator and the global one."""
    from pgrad.numpy_twin.actions import sample_categorical

    rng = np.random.default_rng(seed)
    for trial in range(300):
        rows, n = int(rng.integers(1, 40)), int(rng.integers(2, 12))
        logits = rng.standard_normal((rows, n)) * rng.choice([0.01, 1.0, 8.0, 40.0])
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        if trial % 5 == 0:  # an impossible action in every row
            probs[:, int(rng.integers(n))] = 0.0
            probs[probs.sum(axis=-1) == 0.0, 0] = 1.0
        probs = (probs / probs.sum(axis=-1, keepdims=True)).astype(np.float64 if trial % 4 == 0 else np.float32)
        torch_generator = torch.Generator().manual_seed(seed * 1000 + trial)
        numpy_generator = torch.Generator().manual_seed(seed * 1000 + trial)
        expected = torch.multinomial(torch.from_numpy(probs), 1, True, generator=torch_generator).numpy()[:, 0]
        np.testing.assert_array_equal(sample_categorical(probs, numpy_generator), expected)
        assert torch.equal(torch_generator.get_state(), numpy_generator.get_state())
    probs = np.full((8, 3), 1 / 3, dtype=np.float32)
    torch.manual_seed(seed)
    expected = [torch.multinomial(torch.from_numpy(probs), 1, True).numpy()[:, 0] for _ in range(20)]
    torch.manual_seed(seed)
    for want in expected:
        np.testing.assert_array_equal(sample_categorical(probs), want)


def test_categorical_sample_refuses_what_torch_refuses():
    from pgrad.numpy_twin.actions import sample_categorical

    with pytest.raises(ValueError, match="inf, nan"):
        sample_categorical(np.array([[0.5, np.nan]], dtype=np.float32))


@pytest.mark.parametrize("change", ["activation", "fixed-std", "target", "weights-moved"])
def test_collector_drops_or_rebuilds_its_twin_when_a_part_changes(change):
    """The collector keeps its numpy twin across rollouts only while the policy is made of the same
    parts; a part the twin does not cover (another activation, a fixed std, a target critic)
    sends the next rollout down the torch path, and a replaced weight storage is read afresh."""
    envs = make_vector_env("Pendulum-v1", 2, seed=0)
    torch.manual_seed(0)
    policy = ActorCriticPolicy(envs.single_observation_space, envs.single_action_space)
    collector = RolloutCollector(envs, policy, seed=0)
    collector.collect(4)
    assert collector.fast is not None
    if change == "activation":
        policy.actor_body[1] = torch.nn.ELU()
    elif change == "fixed-std":
        std = policy.head.std
        log_std = std.log_std.detach().clone()
        del std.log_std
        std.register_buffer("log_std", log_std)
    elif change == "target":
        policy.add_target_critic()
    else:
        first = policy.actor_body[0]
        first.weight = torch.nn.Parameter(first.weight.detach() * 2.0)
    collector.collect(4)
    if change == "weights-moved":
        assert collector.fast is not None
        weight = policy.actor_body[0].weight.detach().numpy()
        np.testing.assert_array_equal(collector.fast.actor[0].weight, weight)
    else:
        assert collector.fast is None
    envs.close()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_a_step_with_gradients_enabled_builds_no_graph(env_id, fast):
    """RolloutCollector.step_into runs outside torch.no_grad (entering it every step costs
    microseconds): with gradients on, neither path may build a graph (``.numpy()`` of a tensor
    that needs a gradient would raise) or leave a gradient on the policy."""
    from pgrad.rollout import EpisodeLog, RolloutBuffers

    envs = make_vector_env(env_id, 2, seed=0)
    policy = ActorCriticPolicy(envs.single_observation_space, envs.single_action_space, normalize_obs=True)
    collector = RolloutCollector(envs, policy, seed=0, fast_inference=fast)
    buffers = RolloutBuffers.allocate(3, 2, policy)
    with torch.enable_grad():
        for t in range(3):
            record = buffers.record(t, collector.step_into(buffers, t, EpisodeLog()))
    assert isinstance(record.obs, np.ndarray) and isinstance(record.log_prob, np.ndarray)
    assert all(parameter.grad is None for parameter in policy.parameters())
    envs.close()
