"""ARS maths: the update of V1, V2, V1-t and V2-t against hand-computed examples.

The pure functions are checked on numbers small enough to do on paper; then whole iterations
of each variant are recomputed here from the paper's Algorithm 2, written out independently of
pgrad.algos.ars (only the seeded directions and reset seeds are taken from it, since those are
pgrad's choice of random numbers, not maths).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import pgrad
from pgrad.algos.ars import ars_step, perturbation, reset_seed, top_directions
from pgrad.normalize import RunningMeanStd

R_PLUS = np.array([1.0, 4.0, 2.0])
R_MINUS = np.array([3.0, 0.0, 2.0])
DIRECTIONS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def test_step_with_all_directions_v1_v2():
    # weights r+ - r- = (-2, 4, 0); sum_k w_k delta_k = (-2, 4); the six returns have mean 2 and
    # squared deviations 1, 4, 0, 1, 4, 0, so sigma_R = sqrt(10 / 6); b = 3.
    step, reward_std = ars_step(R_PLUS, R_MINUS, DIRECTIONS, n_top=None)
    assert reward_std == pytest.approx(math.sqrt(10 / 6))
    np.testing.assert_allclose(step, np.array([-2.0, 4.0]) / (3 * math.sqrt(10 / 6)))


def test_step_with_top_directions_v1t_v2t():
    # max(r+, r-) = (3, 4, 2): the top 2 are directions 1 then 0. Their returns 4, 0, 1, 3 have
    # mean 2 and squared deviations 4, 4, 1, 1, so sigma_R = sqrt(10 / 4); sum = 4 e2 - 2 e1.
    np.testing.assert_array_equal(top_directions(R_PLUS, R_MINUS, 2), [1, 0])
    step, reward_std = ars_step(R_PLUS, R_MINUS, DIRECTIONS, n_top=2)
    assert reward_std == pytest.approx(math.sqrt(2.5))
    np.testing.assert_allclose(step, np.array([-2.0, 4.0]) / (2 * math.sqrt(2.5)))


def test_ties_are_broken_by_index_and_equal_returns_give_no_step():
    np.testing.assert_array_equal(top_directions(np.ones(4), np.zeros(4), 2), [0, 1])
    step, reward_std = ars_step(np.full(3, 5.0), np.full(3, 5.0), DIRECTIONS, n_top=None)
    assert reward_std == 0.0 and np.all(step == 0.0)


def test_directions_are_regenerated_identically_from_indices():
    a = perturbation(7, 3, 2, 50)
    np.testing.assert_array_equal(a, perturbation(7, 3, 2, 50))
    assert not np.allclose(a, perturbation(7, 3, 1, 50)) and not np.allclose(a, perturbation(7, 4, 2, 50))
    assert abs(a.mean()) < 0.5 and 0.5 < a.std() < 1.5
    assert reset_seed(7, 3, 2) == reset_seed(7, 3, 2) != reset_seed(7, 3, 2, evaluation=True)


def test_merged_worker_statistics_equal_the_statistics_of_all_states():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(n, 4)) for n in (5, 17, 1, 40)]
    merged, direct = RunningMeanStd((4,)), RunningMeanStd((4,))
    for batch in batches:
        merged.merge(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])
    direct.update(np.concatenate(batches))
    np.testing.assert_allclose(merged.mean.numpy(), direct.mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(merged.var.numpy(), direct.var.numpy(), rtol=1e-12)


class OneStepEnv(gym.Env):
    """One-step episodes: a random state with a non-zero mean, reward -(action - 0.3)^2."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    offset = np.array([2.0, -1.0])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.offset + self.np_random.uniform(-1.0, 1.0, size=2)
        return self.state.copy(), {}

    def step(self, action):
        reward = -float((np.asarray(action, dtype=np.float64)[0] - 0.3) ** 2)
        return self.state.copy(), reward, True, False, {}


def _expected_run(seed, iterations, n_directions, n_top, lr, noise_std, normalize, shift):
    """Algorithm 2 of Mania et al. (2018) written out for OneStepEnv (linear policy, M_0 = 0)."""
    env = OneStepEnv()
    theta = np.zeros(2)
    mean, var, count = np.zeros(2), np.ones(2), 1e-4  # the normaliser's prior, as in pgrad
    for j in range(iterations):
        std = np.sqrt(var + 1e-8)
        plus, minus, deltas, seen = [], [], [], []
        for k in range(n_directions):
            delta = perturbation(seed, j, k, 2)
            state, _ = env.reset(seed=reset_seed(seed, j, k))
            x = np.clip((state - mean) / std, -10, 10) if normalize else state
            for sign, out in ((1.0, plus), (-1.0, minus)):
                action = np.clip((theta + sign * noise_std * delta) @ x, -1.0, 1.0)
                out.append(-((action - 0.3) ** 2) - shift)
            deltas.append(delta)
            seen += [state, state]
        plus, minus, deltas = np.array(plus), np.array(minus), np.array(deltas)
        b = n_top or n_directions
        order = sorted(range(n_directions), key=lambda k: -max(plus[k], minus[k]))[:b]
        sigma = np.std(np.concatenate([plus[order], minus[order]]))
        theta = theta + lr / (b * sigma) * sum((plus[k] - minus[k]) * deltas[k] for k in order)
        if normalize:
            seen = np.array(seen)
            n, batch_mean, batch_var = len(seen), seen.mean(axis=0), seen.var(axis=0)
            delta_mean, total = batch_mean - mean, count + n
            var = (var * count + batch_var * n + delta_mean**2 * count * n / total) / total
            mean, count = mean + delta_mean * n / total, total
    return theta, mean, var


@pytest.mark.parametrize(
    "variant, normalize, n_top",
    [("V1", False, None), ("V2", True, None), ("V1-t", False, 2), ("V2-t", True, 2)],
)
def test_each_variant_matches_algorithm_2(variant, normalize, n_top):
    settings = dict(n_directions=4, n_top=n_top, lr=0.05, noise_std=0.2, normalize_obs=normalize, alive_bonus_shift=0.5)
    agent = pgrad.ARS(OneStepEnv, seed=3, preset="none", n_workers=0, eval_every=0, **settings)
    agent.learn(8 * 3, quiet=True)  # 3 iterations of 2 x 4 one-step rollouts
    assert agent.updates == 3 and agent.total_steps == 24
    theta, mean, var = _expected_run(
        3, 3, settings["n_directions"], n_top, settings["lr"], settings["noise_std"], normalize, shift=0.5
    )
    np.testing.assert_allclose(agent.policy.flat_parameters(), theta, rtol=1e-5, atol=1e-7)
    assert np.linalg.norm(theta) > 1e-3  # the example does move (tolerance above is 1e-7)
    if normalize:
        np.testing.assert_allclose(agent.policy.obs_normalizer.stats.mean.numpy(), mean, rtol=1e-10)
        np.testing.assert_allclose(agent.policy.obs_normalizer.stats.var.numpy(), var, rtol=1e-10)
    else:
        assert agent.policy.obs_normalizer is None
    # Logged returns are the env's, without the training-only shift.
    assert max(agent.logger.recent_returns) <= 0.0 and min(agent.logger.recent_returns) >= -1.69 - 1e-9
    agent.close()


def test_variants_differ():
    """V2 and the -t variants take different steps than V1 on the same example."""
    results = {}
    for name, normalize, n_top in (("V1", False, None), ("V2", True, None), ("V1-t", False, 2)):
        theta, _, _ = _expected_run(3, 3, 4, n_top, 0.05, 0.2, normalize, 0.0)
        results[name] = theta
    assert not np.allclose(results["V1"], results["V2"]) and not np.allclose(results["V1"], results["V1-t"])
