"""PPO's hand-written numpy gradient must equal autograd's (pgrad/numpy_twin/gradient.py), whether
its single-policy step runs compiled (pgrad/numpy_twin/compiled.py) or as numpy calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.numpy_twin import NumpyPolicyGradient
from pgrad.policy import ActorCriticPolicy

BOX_OBS = spaces.Box(-np.inf, np.inf, (11,), np.float32)
POLICIES = {
    "gaussian-tanh": (spaces.Box(-1.0, 1.0, (4,), np.float32), dict(activation="tanh")),
    "gaussian-relu-3-layers": (
        spaces.Box(-2.0, 2.0, (2,), np.float32),
        dict(activation="relu", hidden_sizes=(32, 16, 8), log_std_init=-0.5),
    ),
    "categorical-tanh": (spaces.Discrete(3), dict(activation="tanh")),
    "categorical-relu": (spaces.Discrete(6), dict(activation="relu", hidden_sizes=(16,))),
}
LOSSES = {
    "paper": dict(clip_vloss=False, ent_coef=0.0, max_grad_norm=0.5),
    "value-clip-entropy": dict(clip_vloss=True, ent_coef=0.05, max_grad_norm=100.0),  # the clip never bites
    "tight-clip": dict(clip_vloss=True, ent_coef=0.01, max_grad_norm=0.01),
}


def _agent(policy_case: str, loss_case: str) -> pgrad.PPO:
    action_space, net = POLICIES[policy_case]
    torch.manual_seed(0)
    policy = ActorCriticPolicy(BOX_OBS, action_space, normalize_obs=False, **net)
    with torch.no_grad():  # weights far from their initial values, so every term matters
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    agent = pgrad.PPO.__new__(pgrad.PPO)  # the minibatch steps need only a config and a policy
    agent.config = pgrad.PPO.Config.build(dict(LOSSES[loss_case], vf_clip_coef=0.1, clip_coef=0.2))
    agent.policy = agent.learner = policy  # on the CPU the learner (pgrad/devices.py) is the policy
    agent.setup()
    agent._numpy_gradient = NumpyPolicyGradient(policy)  # what train_iteration builds before its minibatch steps
    return agent


def _minibatch(policy: ActorCriticPolicy, batch: int = 48, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = torch.from_numpy(rng.normal(size=(batch, policy.obs_size)).astype(np.float32))
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        # old log-probs spread around the new ones, so ratios fall inside and outside the clip range
        old_log_probs = dist.log_prob(actions) + torch.from_numpy(rng.normal(0, 0.3, batch).astype(np.float32))
        values = policy.value(obs)
    old_values = values + torch.from_numpy(rng.normal(0, 0.2, batch).astype(np.float32))
    advantages = torch.from_numpy(rng.normal(size=batch).astype(np.float32))
    returns = values + torch.from_numpy(rng.normal(0, 0.5, batch).astype(np.float32))
    return [t.numpy().copy() for t in (obs, actions, old_log_probs, old_values, advantages, returns)]


@pytest.fixture(params=["compiled", "numpy"])
def gradient_kind(request, monkeypatch):
    """Both ways of computing the gradient one policy's update uses: the compiled kernels
    (pgrad/numpy_twin/compiled.py, numba is in the test extra) and numpy calls (PGRAD_NUMBA=0)."""
    if request.param == "numpy":
        monkeypatch.setenv("PGRAD_NUMBA", "0")
    return request.param


def _check_kind(gradient: NumpyPolicyGradient, kind: str) -> None:
    assert (gradient.compiled is not None) == (kind == "compiled")


@pytest.mark.parametrize("loss_case", sorted(LOSSES))
@pytest.mark.parametrize("policy_case", sorted(POLICIES))
def test_numpy_gradient_equals_autograd(policy_case, loss_case, gradient_kind):
    agent = _agent(policy_case, loss_case)
    _check_kind(agent._numpy_gradient, gradient_kind)
    arrays = _minibatch(agent.policy)
    plain_metrics = agent._autograd_step(*(torch.from_numpy(a) for a in arrays))
    plain_grads = [p.grad.clone() for p in agent.policy.parameters()]
    assert NumpyPolicyGradient.supports(agent.policy)
    fast_metrics = agent._numpy_gradient_step(*arrays)
    for (name, parameter), plain in zip(agent.policy.named_parameters(), plain_grads):
        assert plain.abs().max() > 0, name  # every parameter takes part in the loss
        torch.testing.assert_close(parameter.grad, plain, rtol=1e-5, atol=1e-6, msg=name)
    assert fast_metrics.keys() == plain_metrics.keys()
    for key, value in plain_metrics.items():
        assert fast_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_ratio_of_one_follows_torch_tie_rule():
    """At ratio 1 the two surrogate terms tie: torch.min sends half the gradient to each, and the
    clamped one passes it on (inside the clip range), so the full gradient flows."""
    agent = _agent("gaussian-tanh", "value-clip-entropy")
    obs, actions, old_log_probs, old_values, advantages, returns = _minibatch(agent.policy, batch=8)
    with torch.no_grad():
        new_log_probs = agent.policy.distribution(torch.from_numpy(obs)).log_prob(torch.from_numpy(actions)).numpy()
    old_log_probs = new_log_probs.copy()  # ratio exactly 1: unclipped == clipped everywhere
    arrays = [obs, actions, old_log_probs, old_values, advantages, returns]
    agent._autograd_step(*(torch.from_numpy(a) for a in arrays))
    plain_grads = [p.grad.clone() for p in agent.policy.parameters()]
    agent._numpy_gradient_step(*arrays)
    for parameter, plain in zip(agent.policy.parameters(), plain_grads):
        torch.testing.assert_close(parameter.grad, plain, rtol=1e-5, atol=1e-6)


def test_unsupported_policies_fall_back_to_autograd():
    torch.manual_seed(0)
    box = spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert not NumpyPolicyGradient.supports(ActorCriticPolicy(BOX_OBS, box, action_dist="truncated_normal"))
    assert not NumpyPolicyGradient.supports(ActorCriticPolicy(BOX_OBS, box, state_dependent_std=True))
    assert not NumpyPolicyGradient.supports(ActorCriticPolicy(BOX_OBS, box, with_critic=False))
    agent = pgrad.PPO(
        "Pendulum-v1", seed=0, preset=None, action_dist="truncated_normal", n_steps=64, batch_size=32, n_epochs=1
    )
    agent.learn(64)  # trains through autograd
    assert agent._numpy_gradient is None
    agent.close()


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", dict(ent_coef=0.02, clip_vloss=True, activation="relu")),
        ("Pendulum-v1", dict(max_grad_norm=0.05, log_std_init=-0.3)),  # the per-seed clip bites
    ],
)
def test_seed_batched_numpy_gradient_equals_autograd(env_id, overrides, gradient_kind):
    """The seed-axis numpy gradient, and the lone compiled kernel called once per seed, each equal
    autograd over the stacked model."""
    from pgrad.algos.ppo_batched import SeedBatchedPPO

    batched = SeedBatchedPPO(env_id, seeds=[3, 5, 8], preset=None, n_steps=16, batch_size=16, **overrides)
    with torch.no_grad():  # weights far from their (different) initial values
        for parameter in batched.model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    per_seed = [_minibatch(_policy_of(batched, s), batch=40, seed=s) for s in range(3)]
    arrays = [np.stack(column) for column in zip(*per_seed)]  # (S, B, ...)
    plain = batched._autograd_step(*(torch.from_numpy(a) for a in arrays))
    plain_grads = [p.grad.clone() for p in batched.model.parameters()]
    assert NumpyPolicyGradient.supports_seed_batched(batched.model)
    batched._numpy_gradient = NumpyPolicyGradient(batched.model)
    assert (batched._numpy_gradient.seed_steps is not None) == (gradient_kind == "compiled")
    fast = batched._numpy_gradient_step(*arrays)
    for (name, parameter), expected in zip(batched.model.named_parameters(), plain_grads):
        assert (expected.reshape(3, -1).abs().amax(1) > 0).all(), name
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert fast.keys() == plain.keys()
    for key in plain:
        np.testing.assert_allclose(fast[key], plain[key], rtol=1e-5, atol=1e-6, err_msg=key)
    batched.close()


def _policy_of(batched, s: int) -> ActorCriticPolicy:
    """Seed s's ordinary policy holding the batched model's current weights."""
    batched.model.copy_to([agent.policy for agent in batched.agents])
    return batched.agents[s].policy


@pytest.mark.parametrize("normalize_advantage", [True, False])
@pytest.mark.parametrize("policy_case", sorted(POLICIES))
def test_a2c_numpy_gradient_equals_autograd(policy_case, normalize_advantage, gradient_kind):
    action_space, net = POLICIES[policy_case]
    torch.manual_seed(0)
    policy = ActorCriticPolicy(BOX_OBS, action_space, normalize_obs=False, **net)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    agent = pgrad.A2C.__new__(pgrad.A2C)
    agent.config = pgrad.A2C.Config.build(
        dict(ent_coef=0.03, max_grad_norm=0.5, normalize_advantage=normalize_advantage)
    )
    agent.policy = agent.learner = policy  # on the CPU the learner (pgrad/devices.py) is the policy
    agent.setup()
    obs, actions, _, _, advantages, returns = _minibatch(policy, batch=5)  # A2C's 5-step batch
    plain = agent._autograd_step(*(torch.from_numpy(a) for a in (obs, actions, advantages, returns)))
    plain_grads = [p.grad.clone() for p in policy.parameters()]
    fast = agent._numpy_gradient_step(*(torch.from_numpy(a) for a in (obs, actions, advantages, returns)))
    _check_kind(agent._numpy_gradient, gradient_kind)
    for (name, parameter), expected in zip(policy.named_parameters(), plain_grads):
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert fast.keys() == plain.keys()
    for key, value in plain.items():
        assert fast[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


OPTIMIZERS = {
    "adam-fused": lambda params: torch.optim.Adam(params, lr=3e-4, eps=1e-5, fused=True),
    "adam-per-parameter": lambda params: torch.optim.Adam(params, lr=3e-4, eps=1e-5, foreach=False),
    "rmsprop-foreach": lambda params: torch.optim.RMSprop(params, lr=7e-4, alpha=0.99, eps=1e-5, foreach=True),
    "rmsprop-per-parameter": lambda params: torch.optim.RMSprop(params, lr=7e-4, alpha=0.99, eps=1e-5, foreach=False),
}


def _optimizer_pair(case: str):
    """Two identical policies with the same torch optimizer, one of them to be stepped by its numpy twin."""
    from pgrad.numpy_twin import NumpyOptimizer

    def build():
        torch.manual_seed(0)
        policy = ActorCriticPolicy(BOX_OBS, POLICIES["gaussian-tanh"][0], normalize_obs=False)
        return policy, OPTIMIZERS[case](policy.parameters())

    (fast_policy, fast_opt), (plain_policy, plain_opt) = build(), build()
    gradient = NumpyPolicyGradient(fast_policy)
    gradient.bind()
    twin = NumpyOptimizer.reuse_or_build(fast_opt, gradient, None)
    assert type(twin).__name__ == ("NumpyAdam" if case.startswith("adam") else "NumpyRMSprop")
    return fast_policy, fast_opt, twin, gradient, plain_policy, plain_opt


def _step_both(steps: int, rng, fast_opt, adam, gradient, plain_policy, plain_opt) -> None:
    adam.prepare()
    for t in range(steps):
        for group in (*fast_opt.param_groups, *plain_opt.param_groups):
            group["lr"] = fast_opt.defaults["lr"] * (
                1 - t / (2 * steps)
            )  # changing, as anneal_lr sets it between steps
        flat = rng.normal(0, 0.1, gradient.flat_grad.size).astype(np.float32)
        gradient.flat_grad[:] = flat
        offset = 0
        for p in plain_policy.parameters():
            p.grad = torch.from_numpy(flat[offset : offset + p.numel()].reshape(p.shape).copy())
            offset += p.numel()
        adam.step()
        plain_opt.step()


def test_compiled_adam_step_equals_the_numpy_step_to_the_bit(monkeypatch):
    """NumpyAdam's compiled step (pgrad/numpy_twin/compiled.py, adam_step) against its numpy one,
    both stepping the same gradients: parameters and moments equal to the bit."""
    compiled_pair = _optimizer_pair("adam-fused")
    monkeypatch.setenv("PGRAD_NUMBA", "0")
    numpy_pair = _optimizer_pair("adam-fused")
    assert compiled_pair[2].kernels is not None and numpy_pair[2].kernels is None
    results = []
    for policy, optimizer, adam, gradient, *_ in (compiled_pair, numpy_pair):
        rng = np.random.default_rng(0)
        adam.prepare()
        for t in range(40):
            optimizer.param_groups[0]["lr"] = 3e-4 * (1 - t / 80)  # changing, as anneal_lr sets it
            gradient.flat_grad[:] = rng.normal(0, 0.1, gradient.flat_grad.size).astype(np.float32)
            adam.step()
        results.append((policy.state_dict(), optimizer.state_dict()["state"]))
    (params_c, state_c), (params_n, state_n) = results
    for name in params_n:
        assert torch.equal(params_c[name], params_n[name]), name
    for index in state_n:
        for key in state_n[index]:
            assert torch.equal(state_c[index][key], state_n[index][key]), (index, key)


def _assert_same(fast_policy, fast_opt, plain_policy, plain_opt) -> None:
    for a, b in zip(fast_policy.parameters(), plain_policy.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    fast_state, plain_state = fast_opt.state_dict()["state"], plain_opt.state_dict()["state"]
    assert sorted(fast_state) == sorted(plain_state)
    for index in plain_state:
        assert sorted(fast_state[index]) == sorted(plain_state[index])
        for key in plain_state[index]:
            torch.testing.assert_close(fast_state[index][key], plain_state[index][key], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_numpy_optimizer_equals_torch_optimizer(case):
    fast_policy, fast_opt, adam, gradient, plain_policy, plain_opt = _optimizer_pair(case)
    rng = np.random.default_rng(0)
    _step_both(60, rng, fast_opt, adam, gradient, plain_policy, plain_opt)
    _assert_same(fast_policy, fast_opt, plain_policy, plain_opt)


@pytest.mark.parametrize("case", ["adam-fused", "rmsprop-foreach"])
def test_numpy_optimizer_state_is_the_optimizers_and_survives_a_checkpoint(tmp_path, case):
    from pgrad.io import optimizer_from_tensors, optimizer_to_tensors, read_tensors, write_tensors

    fast_policy, fast_opt, adam, gradient, plain_policy, plain_opt = _optimizer_pair(case)
    rng = np.random.default_rng(1)
    _step_both(20, rng, fast_opt, adam, gradient, plain_policy, plain_opt)
    # the torch optimizer's own state_dict is current (its tensors are the flat buffers' views),
    # and saving it works although those views share one buffer
    tensors, meta = optimizer_to_tensors(fast_opt)
    write_tensors(tmp_path / "state.safetensors", tensors)
    saved = {name: value.clone() for name, value in tensors.items()}
    _step_both(5, rng, fast_opt, adam, gradient, plain_policy, plain_opt)  # the state moves on...
    optimizer_from_tensors(
        fast_opt, read_tensors(tmp_path / "state.safetensors", "test"), meta
    )  # ...and is rolled back
    optimizer_from_tensors(plain_opt, saved, meta)
    with torch.no_grad():
        for a, b in zip(fast_policy.parameters(), plain_policy.parameters()):
            b.copy_(a)
    _step_both(20, rng, fast_opt, adam, gradient, plain_policy, plain_opt)  # prepare() adopts the loaded state
    _assert_same(fast_policy, fast_opt, plain_policy, plain_opt)


def test_numpy_optimizers_decline_what_they_do_not_compute():
    from pgrad.numpy_twin import NumpyAdam, NumpyOptimizer, NumpyRMSprop

    torch.manual_seed(0)
    policy = ActorCriticPolicy(BOX_OBS, POLICIES["gaussian-tanh"][0], normalize_obs=False)
    gradient = NumpyPolicyGradient(policy)
    for optimizer in (
        torch.optim.Adam(policy.parameters(), amsgrad=True),
        torch.optim.Adam(policy.parameters(), weight_decay=0.01),
        torch.optim.AdamW(policy.parameters()),
        torch.optim.Adam(list(policy.parameters())[::2]),  # not a contiguous run of the gradient's parameters
        torch.optim.RMSprop(policy.parameters(), momentum=0.9),
        torch.optim.RMSprop(policy.parameters(), centered=True),
        torch.optim.SGD(policy.parameters(), lr=0.1),
    ):
        assert not NumpyAdam.supports(optimizer, gradient) and not NumpyRMSprop.supports(optimizer, gradient)
        assert NumpyOptimizer.reuse_or_build(optimizer, gradient, None) is None
    assert NumpyAdam.supports(torch.optim.Adam(policy.parameters(), eps=1e-5, fused=True), gradient)
    assert NumpyRMSprop.supports(torch.optim.RMSprop(policy.parameters(), foreach=True), gradient)
    # one network's parameters (a contiguous run: actor-critic's actor and critic optimisers)
    assert NumpyAdam.supports(torch.optim.Adam(list(policy.parameters())[:-1]), gradient)
    assert NumpyAdam.supports(torch.optim.Adam(policy.critic.parameters()), gradient)


@pytest.mark.parametrize("case", ["adam-fused", "rmsprop-foreach"])
def test_numpy_optimizer_reads_weights_changed_between_updates(case):
    # prepare() must take the parameters as they are now (loaded or edited in place since the
    # last update), not write back a stale copy of them
    fast_policy, fast_opt, twin, gradient, plain_policy, plain_opt = _optimizer_pair(case)
    rng = np.random.default_rng(2)
    _step_both(10, rng, fast_opt, twin, gradient, plain_policy, plain_opt)
    with torch.no_grad():
        for a, b in zip(fast_policy.parameters(), plain_policy.parameters()):
            a.mul_(0.5)
            b.mul_(0.5)
    _step_both(10, rng, fast_opt, twin, gradient, plain_policy, plain_opt)
    _assert_same(fast_policy, fast_opt, plain_policy, plain_opt)


def test_numpy_optimizer_hands_steps_to_torch_when_it_cannot_compute_them():
    # options changed after construction (as a loaded param group can), and step counts that
    # disagree (torch skips parameters without a gradient): torch's own step, on the same state
    fast_policy, fast_opt, twin, gradient, plain_policy, plain_opt = _optimizer_pair("adam-per-parameter")
    rng = np.random.default_rng(3)
    for group in (*fast_opt.param_groups, *plain_opt.param_groups):
        group["weight_decay"] = 0.1
    _step_both(5, rng, fast_opt, twin, gradient, plain_policy, plain_opt)
    _assert_same(fast_policy, fast_opt, plain_policy, plain_opt)
    for group in (*fast_opt.param_groups, *plain_opt.param_groups):
        group["weight_decay"] = 0.0
    for opt in (fast_opt, plain_opt):  # one parameter one step behind the others
        next(iter(opt.state.values()))["step"] -= 1
    _step_both(5, rng, fast_opt, twin, gradient, plain_policy, plain_opt)
    _assert_same(fast_policy, fast_opt, plain_policy, plain_opt)


def test_numpy_explained_variance_is_np_vars_arithmetic():
    """The logged explained variance equals 1 - np.var(t - p, ddof=1) / np.var(t, ddof=1) in float64
    exactly (it repeats np.var's arithmetic without its wrapper), and is NaN where undefined."""
    from pgrad.numpy_twin.gradient import explained_variance_np

    rng = np.random.default_rng(0)
    for size in [2, 3, 8, 64, 2048, 4099]:
        predictions = (rng.standard_normal(size) * 10).astype(np.float32)
        targets = (predictions + rng.standard_normal(size)).astype(np.float32)
        target64 = targets.astype(np.float64)
        expected = 1.0 - float(np.var(target64 - predictions, ddof=1)) / float(np.var(target64, ddof=1))
        assert explained_variance_np(predictions, targets) == expected
    assert np.isnan(explained_variance_np(np.zeros(1, np.float32), np.ones(1, np.float32)))
    assert np.isnan(explained_variance_np(np.zeros(4, np.float32), np.ones(4, np.float32)))
