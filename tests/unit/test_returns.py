"""gae and discounted_returns against slow references written straight from the definitions.

The references sum forwards over each episode (Schulman et al. 2016, eq. 16: adv_t is the
(gamma*lam)-discounted sum of the TD residuals until the episode ends or the batch is cut)
instead of using the backward recursion, so the two sides do not share a formulation.
"""

import numpy as np
import pytest
import torch

from pgrad import returns as returns_module
from pgrad.returns import discounted_returns, gae

torch.set_num_threads(1)

SHAPES = [(1,), (7,), (1, 1), (1, 4), (9, 1), (33, 5), (64, 3)]


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Per element, in Python floats: adv_t = sum_{k=t}^{end} (gamma*lam)^(k-t) delta_k."""
    n_steps, n_envs = rewards.shape
    advantages = np.zeros((n_steps, n_envs))
    for env in range(n_envs):
        for t in range(n_steps):
            total, weight = 0.0, 1.0
            for k in range(t, n_steps):
                bootstrap = 0.0 if terminated[k, env] else gamma * float(next_values[k, env])
                delta = float(rewards[k, env]) + bootstrap - float(values[k, env])
                total += weight * delta
                if terminated[k, env] or truncated[k, env]:
                    break
                weight *= gamma * lam
            advantages[t, env] = total
    return advantages, advantages + values.astype(np.float64)


def reference_discounted_returns(rewards, terminated, truncated, gamma, last_values):
    """Per element: G_t = sum_{k=t}^{end} gamma^(k-t) r_k, plus gamma^(T-t) * last_value if no end."""
    n_steps, n_envs = rewards.shape
    result = np.zeros((n_steps, n_envs))
    for env in range(n_envs):
        for t in range(n_steps):
            total, weight, ended = 0.0, 1.0, False
            for k in range(t, n_steps):
                total += weight * float(rewards[k, env])
                weight *= gamma
                if terminated[k, env] or truncated[k, env]:
                    ended = True
                    break
            if not ended and last_values is not None:
                total += weight * float(last_values[env])
            result[t, env] = total
    return result


def random_batch(shape, seed):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=shape)
    values = rng.normal(size=shape)
    next_values = rng.normal(size=shape)
    terminated = rng.random(shape) < 0.15
    truncated = rng.random(shape) < 0.15
    if terminated.size > 2:  # make sure both flags meet on some step
        terminated.flat[1] = truncated.flat[1] = True
    last_values = rng.normal(size=shape[1:])
    return rewards, values, next_values, terminated, truncated, last_values


def as_2d(array):
    array = np.asarray(array)
    return array.reshape(array.shape[0], -1)


def convert(array, backend, dtype):
    """Floats to the backend/dtype under test; flags stay bool for one backend, floats for the other."""
    if array.dtype == bool:
        return torch.from_numpy(array.copy()) if backend == "torch" else array.astype(dtype)
    return torch.tensor(array, dtype=getattr(torch, dtype)) if backend == "torch" else array.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gae_matches_reference(shape, backend, dtype):
    rewards, values, next_values, terminated, truncated, _ = random_batch(shape, seed=len(shape) * 100 + shape[0])
    gamma, lam = 0.97, 0.9
    expected_adv, expected_ret = reference_gae(
        as_2d(rewards), as_2d(values), as_2d(next_values), as_2d(terminated), as_2d(truncated), gamma, lam
    )
    adv, ret = gae(
        *(convert(a, backend, dtype) for a in (rewards, values, next_values, terminated, truncated)),
        gamma=gamma,
        lam=lam,
    )
    expected_type = torch.Tensor if backend == "torch" else np.ndarray
    assert isinstance(adv, expected_type) and isinstance(ret, expected_type)
    assert str(adv.dtype).endswith(dtype) and str(ret.dtype).endswith(dtype)
    assert tuple(adv.shape) == shape and tuple(ret.shape) == shape
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(as_2d(np.asarray(adv)), expected_adv, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(as_2d(np.asarray(ret)), expected_ret, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bootstrap", [False, True])
def test_discounted_returns_matches_reference(shape, backend, dtype, bootstrap):
    rewards, _, _, terminated, truncated, last_values = random_batch(shape, seed=7 + shape[0])
    gamma = 0.9
    expected = reference_discounted_returns(
        as_2d(rewards),
        as_2d(terminated),
        as_2d(truncated),
        gamma,
        np.reshape(last_values, -1) if bootstrap else None,
    )
    result = discounted_returns(
        *(convert(a, backend, dtype) for a in (rewards, terminated, truncated)),
        gamma=gamma,
        last_values=convert(last_values, backend, dtype) if bootstrap else None,
    )
    assert isinstance(result, torch.Tensor if backend == "torch" else np.ndarray)
    assert str(result.dtype).endswith(dtype) and tuple(result.shape) == shape
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(as_2d(np.asarray(result)), expected, rtol=tolerance, atol=tolerance)


def test_torch_loop_path_matches_numpy_path(monkeypatch):
    """Tensors numpy cannot view (GPU, bfloat16) take the pure-torch loop; force it here."""
    rewards, values, next_values, terminated, truncated, last_values = random_batch((40, 3), seed=3)
    tensors = [torch.from_numpy(a.copy()) for a in (rewards, values, next_values, terminated, truncated)]
    expected_adv, expected_ret = gae(rewards, values, next_values, terminated, truncated)
    expected_mc = discounted_returns(rewards, terminated, truncated, 0.99, last_values)
    monkeypatch.setattr(returns_module, "_NUMPY_SHAREABLE_DTYPES", ())
    adv, ret = gae(*tensors)
    mc = discounted_returns(tensors[0], tensors[3], tensors[4], 0.99, torch.from_numpy(last_values))
    np.testing.assert_allclose(adv.numpy(), expected_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret.numpy(), expected_ret, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mc.numpy(), expected_mc, rtol=1e-12, atol=1e-12)


# Hand-computed cases: gamma = lam = 0.5, three steps of one episode.
# rewards r = [1, 2, 3], values V = [0.5, 1.0, 1.5], next_values V' = [1.0, 1.5, 2.0]
# deltas without any flag: 1 + 0.5*1.0 - 0.5 = 1.0;  2 + 0.5*1.5 - 1.0 = 1.75;  3 + 0.5*2.0 - 1.5 = 2.5
HAND_REWARDS = np.array([1.0, 2.0, 3.0])
HAND_VALUES = np.array([0.5, 1.0, 1.5])
HAND_NEXT_VALUES = np.array([1.0, 1.5, 2.0])


def hand_gae(terminated=(0, 0, 0), truncated=(0, 0, 0)):
    return gae(
        HAND_REWARDS,
        HAND_VALUES,
        HAND_NEXT_VALUES,
        np.array(terminated),
        np.array(truncated),
        gamma=0.5,
        lam=0.5,
    )


def test_gae_by_hand_no_episode_end():
    adv, ret = hand_gae()
    # adv2 = 2.5; adv1 = 1.75 + 0.25*2.5 = 2.375; adv0 = 1.0 + 0.25*2.375 = 1.59375
    np.testing.assert_allclose(adv, [1.59375, 2.375, 2.5])
    np.testing.assert_allclose(ret, [2.09375, 3.375, 4.0])


def test_gae_by_hand_truncated_step_bootstraps_but_does_not_carry():
    adv, ret = hand_gae(truncated=(0, 1, 0))
    # delta1 keeps gamma*V'1 (bootstrap through the time limit) = 1.75; adv1 stops there;
    # adv0 = 1.0 + 0.25*1.75 = 1.4375
    np.testing.assert_allclose(adv, [1.4375, 1.75, 2.5])
    np.testing.assert_allclose(ret, [1.9375, 2.75, 4.0])


def test_gae_by_hand_terminated_step_does_not_bootstrap():
    adv, _ = hand_gae(terminated=(0, 1, 0))
    # delta1 = 2 - 1.0 = 1.0; adv0 = 1.0 + 0.25*1.0 = 1.25
    np.testing.assert_allclose(adv, [1.25, 1.0, 2.5])


def test_gae_by_hand_terminated_wins_over_truncated():
    both, _ = hand_gae(terminated=(0, 1, 0), truncated=(0, 1, 0))
    np.testing.assert_allclose(both, [1.25, 1.0, 2.5])


def test_gae_by_hand_last_step_ends():
    # At t = T-1 the flags act the same way: truncated keeps gamma*V'2, terminated drops it.
    truncated_adv, _ = hand_gae(truncated=(0, 0, 1))
    terminated_adv, _ = hand_gae(terminated=(0, 0, 1))
    np.testing.assert_allclose(truncated_adv, [1.59375, 2.375, 2.5])
    # delta2 = 3 - 1.5 = 1.5; adv1 = 1.75 + 0.25*1.5 = 2.125; adv0 = 1 + 0.25*2.125 = 1.53125
    np.testing.assert_allclose(terminated_adv, [1.53125, 2.125, 1.5])


def test_gae_lambda_extremes():
    # lam = 0: one-step TD residuals; lam = 1 without episode ends: discounted sum of residuals.
    adv0, _ = gae(HAND_REWARDS, HAND_VALUES, HAND_NEXT_VALUES, np.zeros(3), np.zeros(3), gamma=0.5, lam=0.0)
    np.testing.assert_allclose(adv0, [1.0, 1.75, 2.5])
    adv1, _ = gae(HAND_REWARDS, HAND_VALUES, HAND_NEXT_VALUES, np.zeros(3), np.zeros(3), gamma=0.5, lam=1.0)
    np.testing.assert_allclose(adv1, [1.0 + 0.5 * 1.75 + 0.25 * 2.5, 1.75 + 0.5 * 2.5, 2.5])


def test_gae_two_envs_are_independent():
    rewards = np.stack([HAND_REWARDS, 10 * HAND_REWARDS], axis=1)  # (3, 2)
    values = np.stack([HAND_VALUES, np.zeros(3)], axis=1)
    next_values = np.stack([HAND_NEXT_VALUES, np.zeros(3)], axis=1)
    terminated = np.array([[0, 0], [1, 0], [0, 0]], dtype=bool)
    adv, _ = gae(rewards, values, next_values, terminated, np.zeros((3, 2), bool), gamma=0.5, lam=0.5)
    np.testing.assert_allclose(adv[:, 0], [1.25, 1.0, 2.5])
    # env 1: V = 0 everywhere, so adv is the (0.25)-discounted reward sum: 30; 20 + 7.5; 10 + 6.875
    np.testing.assert_allclose(adv[:, 1], [16.875, 27.5, 30.0])


def test_discounted_returns_by_hand():
    flags = np.zeros(3, dtype=bool)
    # G2 = 3; G1 = 2 + 0.5*3 = 3.5; G0 = 1 + 0.5*3.5 = 2.75
    np.testing.assert_allclose(discounted_returns(HAND_REWARDS, flags, flags, 0.5), [2.75, 3.5, 3.0])
    # cut mid-episode with last_values = 4: G2 = 3 + 0.5*4 = 5; G1 = 4.5; G0 = 3.25
    np.testing.assert_allclose(discounted_returns(HAND_REWARDS, flags, flags, 0.5, last_values=4.0), [3.25, 4.5, 5.0])


def test_discounted_returns_bootstraps_only_at_the_cut_end():
    ended_last = np.array([False, False, True])
    for flag_name in ("terminated", "truncated"):
        flags = {"terminated": np.zeros(3, bool), "truncated": np.zeros(3, bool)}
        flags[flag_name] = ended_last
        result = discounted_returns(HAND_REWARDS, flags["terminated"], flags["truncated"], 0.5, last_values=4.0)
        np.testing.assert_allclose(result, [2.75, 3.5, 3.0], err_msg=flag_name)
    # An episode ending inside the batch splits it; only the unfinished tail sees last_values.
    truncated_first = np.array([True, False, False])
    result = discounted_returns(HAND_REWARDS, np.zeros(3, bool), truncated_first, 0.5, last_values=4.0)
    np.testing.assert_allclose(result, [1.0, 4.5, 5.0])


def test_discounted_returns_per_env_last_values():
    rewards = np.zeros((2, 2))
    terminated = np.array([[False, False], [False, True]])
    result = discounted_returns(rewards, terminated, np.zeros((2, 2), bool), 0.5, last_values=np.array([8.0, 8.0]))
    np.testing.assert_allclose(result, [[2.0, 0.0], [4.0, 0.0]])


def test_mixed_inputs_follow_rewards_and_do_not_track_gradients():
    values = torch.tensor([0.5, 1.0, 1.5], requires_grad=True)
    adv, ret = gae(
        torch.tensor(HAND_REWARDS, dtype=torch.float32),
        values,
        HAND_NEXT_VALUES,
        torch.zeros(3),
        np.zeros(3, dtype=bool),
        gamma=0.5,
        lam=0.5,
    )
    assert adv.dtype == torch.float32 and not adv.requires_grad and not ret.requires_grad
    np.testing.assert_allclose(adv.numpy(), [1.59375, 2.375, 2.5])
    np.testing.assert_allclose(ret.numpy(), [2.09375, 3.375, 4.0])
    result = discounted_returns([1, 2, 3], [0, 0, 0], [0, 0, 0], 0.5)  # lists and int rewards
    assert isinstance(result, np.ndarray) and result.dtype == np.float64
    np.testing.assert_allclose(result, [2.75, 3.5, 3.0])


def test_empty_batch():
    adv, ret = gae(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)))
    assert adv.shape == (0, 2) and ret.shape == (0, 2)


def test_shape_and_range_errors_are_one_line():
    ok = np.zeros((4, 2))
    cases = [
        (lambda: gae(ok, np.zeros((4, 3)), ok, ok, ok), "values has shape (4, 3)"),
        (lambda: gae(ok, ok, ok, ok, np.zeros(4)), "truncated has shape (4,)"),
        (lambda: gae(*[np.zeros((4, 2, 1))] * 5), "expected time-first"),
        (lambda: discounted_returns(ok, ok, np.zeros((2, 4)), 0.9), "truncated has shape (2, 4)"),
        (lambda: discounted_returns(ok, ok, ok, 0.9, last_values=np.zeros(3)), "last_values has shape (3,)"),
        (lambda: discounted_returns(ok, ok, ok, 0.9, last_values=np.zeros((1,))), "last_values has shape (1,)"),
        (lambda: discounted_returns(np.zeros((4, 2, 1)), ok, ok, 0.9), "expected time-first"),
        (lambda: gae(ok, ok, ok, ok, ok, gamma=1.5), "gamma must be in [0, 1]"),
        (lambda: gae(ok, ok, ok, ok, ok, lam=-0.1), "lam must be in [0, 1]"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)


def reference_discounted_returns_bootstrapped(rewards, terminated, truncated, gamma, next_values):
    """Per element: the rewards until the episode ends, plus gamma^(k+1-t) V(final obs) if it was cut."""
    n_steps, n_envs = rewards.shape
    result = np.zeros((n_steps, n_envs))
    for env in range(n_envs):
        for t in range(n_steps):
            total, weight = 0.0, 1.0
            for k in range(t, n_steps):
                total += weight * float(rewards[k, env])
                weight *= gamma
                if terminated[k, env]:
                    break
                if truncated[k, env]:
                    total += weight * float(next_values[k, env])
                    break
            result[t, env] = total
    return result


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_discounted_returns_bootstraps_truncation_with_next_values(shape, backend, dtype):
    rewards, _, next_values, terminated, truncated, _ = random_batch(shape, seed=11 + shape[0])
    gamma = 0.9
    expected = reference_discounted_returns_bootstrapped(
        as_2d(rewards), as_2d(terminated), as_2d(truncated), gamma, as_2d(next_values)
    )
    result = discounted_returns(
        *(convert(a, backend, dtype) for a in (rewards, terminated, truncated)),
        gamma=gamma,
        next_values=convert(next_values, backend, dtype),
    )
    assert isinstance(result, torch.Tensor if backend == "torch" else np.ndarray)
    assert str(result.dtype).endswith(dtype) and tuple(result.shape) == shape
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(as_2d(np.asarray(result)), expected, rtol=tolerance, atol=tolerance)


def test_discounted_returns_next_values_by_hand():
    # rewards 1, 2, 3; an episode truncated after step 1 with V(final obs) = 10, then one terminated.
    terminated = np.array([False, False, True])
    truncated = np.array([False, True, False])
    next_values = np.array([100.0, 10.0, 100.0])  # only the truncated step's entry is read
    # G1 = 2 + 0.5*10 = 7; G0 = 1 + 0.5*7 = 4.5; G2 = 3
    result = discounted_returns(HAND_REWARDS, terminated, truncated, 0.5, next_values=next_values)
    np.testing.assert_allclose(result, [4.5, 7.0, 3.0])
    # terminated wins over truncated: no bootstrap
    both = np.array([False, True, False])
    result = discounted_returns(HAND_REWARDS, both, both, 0.5, next_values=next_values)
    np.testing.assert_allclose(result, [2.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="next_values has shape"):
        discounted_returns(HAND_REWARDS, terminated, truncated, 0.5, next_values=np.zeros(2))
