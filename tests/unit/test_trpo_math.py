"""The pure pieces of TRPO/NPG (pgrad/algos/trpo.py) and of PPO's KL penalty, against references:
conjugate gradient against a direct solve, the Fisher-vector product against the explicit Fisher
(outer-product form) and the KL's Hessian by torch.autograd.functional.hessian, each head's KL
against a brute-force one, the line search on constructed cases, the adaptive beta rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal
from torch.func import functional_call

from pgrad.algos.ppo import adapt_kl_beta
from pgrad.algos.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    policy_kl,
    surrogate_loss,
    truncated_normal_kl,
    trust_region_step,
)
from pgrad.distributions import (
    BernoulliHead,
    CategoricalHead,
    DiagGaussianHead,
    MultiCategorical,
    MultiCategoricalHead,
    TruncatedNormal,
    TruncatedNormalHead,
)

# -- conjugate gradient ---------------------------------------------------------------------------


def random_spd(n: int, seed: int, condition: float = 100.0) -> torch.Tensor:
    """A random symmetric positive-definite matrix with eigenvalues spread over ``condition``."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.logspace(0, math.log10(condition), n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_matches_a_direct_solve(seed):
    a = random_spd(12, seed)
    b = torch.randn(12, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    # n iterations solve an n x n system in exact arithmetic; in floating point CG loses
    # orthogonality and takes a few more (condition 100 here)
    x, residual = conjugate_gradient(lambda v: a @ v, b, iterations=36, residual_tol=1e-24)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-12)
    assert residual == pytest.approx(float((b - a @ x).square().sum()), abs=1e-12)


def test_conjugate_gradient_with_few_iterations_is_partial_and_stops_when_solved():
    a = random_spd(30, 3, condition=1e3)
    b = torch.ones(30, dtype=torch.float64)
    exact = torch.linalg.solve(a, b)
    errors = []
    for iterations in (1, 5, 10, 20, 60):
        x, _ = conjugate_gradient(lambda v: a @ v, b, iterations, residual_tol=0.0)
        errors.append(float((x - exact) @ a @ (x - exact)))  # CG minimises the A-norm of the error
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-20 * errors[0]
    calls = []
    conjugate_gradient(lambda v: calls.append(1) or 2.0 * v, b, iterations=10)  # A = 2I: one step solves it
    assert len(calls) == 1


# -- the Fisher-vector product -------------------------------------------------------------------


class TinyPolicy(nn.Module):
    """obs -> tanh layer -> an action head of pgrad's; forward returns the distribution."""

    def __init__(self, head: nn.Module, obs_size: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_size, hidden), nn.Tanh())
        self.head = head

    def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None):
        features = self.body(obs)
        return self.head(features) if mask is None else self.head(features, mask)


def double(policy: nn.Module) -> nn.Module:
    """The policy in float64 with larger output weights, so the distributions are far from uniform."""
    policy = policy.double()
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            parameter.normal_(0.0, 0.7, generator=torch.Generator().manual_seed(hash(name) % 1000))
    return policy


def flat_parameters(policy: nn.Module) -> tuple[list[str], list[torch.Size], torch.Tensor]:
    names = [name for name, _ in policy.named_parameters()]
    shapes = [p.shape for _, p in policy.named_parameters()]
    return names, shapes, torch.cat([p.detach().reshape(-1) for p in policy.parameters()])


def unflatten(names, shapes, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, shape in zip(names, shapes, strict=True):
        count = math.prod(shape)
        out[name] = flat[offset : offset + count].view(shape)
        offset += count
    return out


def kl_hessian(policy: nn.Module, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Hessian of the mean KL(pi_old || pi_theta) w.r.t. the flat parameters at theta_old,
    by torch.autograd.functional.hessian."""
    names, shapes, theta_old = flat_parameters(policy)
    with torch.no_grad():
        old = policy(obs, mask)

    def mean_kl(theta: torch.Tensor) -> torch.Tensor:
        return policy_kl(old, functional_call(policy, unflatten(names, shapes, theta), (obs, mask))).mean()

    return torch.autograd.functional.hessian(mean_kl, theta_old)


def fvp_matrix(policy: nn.Module, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """pgrad's Fisher-vector product applied to every unit vector: the matrix it represents."""
    with torch.no_grad():
        old = policy(obs, mask)
    parameters = list(policy.parameters())
    product = fisher_vector_product(policy_kl(old, policy(obs, mask)).mean(), parameters, damping=0.0)
    size = sum(p.numel() for p in parameters)
    return torch.stack([product(unit) for unit in torch.eye(size, dtype=torch.float64)], dim=1)


def categorical_fisher(policy: nn.Module, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The explicit Fisher E_s sum_a p(a|s) g g^T, g = grad log p(a|s): the outer-product form,
    exact in the actions (every action weighted by its probability, masked ones by 0)."""
    names, shapes, theta = flat_parameters(policy)

    def log_probs(flat: torch.Tensor) -> torch.Tensor:
        return functional_call(policy, unflatten(names, shapes, flat), (obs, mask)).logits  # (B, A) normalised

    jacobian = torch.autograd.functional.jacobian(log_probs, theta)  # (B, A, P)
    probs = log_probs(theta).exp().detach()  # (B, A)
    return torch.einsum("ba,bap,baq->pq", probs, jacobian, jacobian) / obs.shape[0]


def gaussian_fisher(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The explicit Fisher of a diagonal Gaussian policy, E_s J^T M J with J the Jacobian of
    (mean, log std) and M = diag(1 / std^2, 2) its Fisher in those parameters."""
    names, shapes, theta = flat_parameters(policy)
    action_dim = policy.head.action_dim

    def outputs(flat: torch.Tensor) -> torch.Tensor:
        dist = functional_call(policy, unflatten(names, shapes, flat), (obs,))
        return torch.cat([dist.base_dist.loc, dist.base_dist.scale.log()], dim=-1)  # (B, 2d)

    jacobian = torch.autograd.functional.jacobian(outputs, theta)  # (B, 2d, P)
    std = outputs(theta)[:, action_dim:].exp().detach()
    metric = torch.cat([std.pow(-2), torch.full_like(std, 2.0)], dim=-1)  # (B, 2d)
    return torch.einsum("bk,bkp,bkq->pq", metric, jacobian, jacobian) / obs.shape[0]


OBS = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_fisher_vector_product_is_the_categorical_fisher():
    policy = double(TinyPolicy(CategoricalHead(4, 3)))
    explicit = categorical_fisher(policy, OBS)
    torch.testing.assert_close(fvp_matrix(policy, OBS), explicit, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(kl_hessian(policy, OBS), explicit, rtol=1e-7, atol=1e-10)


def test_fisher_vector_product_is_the_masked_categorical_fisher():
    policy = double(TinyPolicy(CategoricalHead(4, 3)))
    mask = torch.tensor([[True, False, True]] * 4 + [[False, True, True]] * 3)
    explicit = categorical_fisher(policy, OBS, mask)
    assert explicit.abs().max() > 1e-3
    torch.testing.assert_close(fvp_matrix(policy, OBS, mask), explicit, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("state_dependent_std", [False, True])
def test_fisher_vector_product_is_the_gaussian_fisher(state_dependent_std):
    policy = double(TinyPolicy(DiagGaussianHead(4, 2, state_dependent_std=state_dependent_std)))
    explicit = gaussian_fisher(policy, OBS)
    torch.testing.assert_close(fvp_matrix(policy, OBS), explicit, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(kl_hessian(policy, OBS), explicit, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(lambda: MultiCategoricalHead(4, [2, 3]), id="multidiscrete"),
        pytest.param(lambda: BernoulliHead(4, 3), id="multibinary"),
        pytest.param(lambda: TruncatedNormalHead(4, 2), id="truncated-normal"),
    ],
)
def test_fisher_vector_product_is_the_kl_hessian_for_every_other_head(head):
    policy = double(TinyPolicy(head()))
    hessian = kl_hessian(policy, OBS)
    assert torch.linalg.eigvalsh(hessian).min() > -1e-10  # a Fisher: positive semi-definite
    torch.testing.assert_close(fvp_matrix(policy, OBS), hessian, rtol=1e-6, atol=1e-10)


def test_damping_adds_a_multiple_of_the_vector():
    policy = double(TinyPolicy(CategoricalHead(4, 3)))
    with torch.no_grad():
        old = policy(OBS)
    parameters = list(policy.parameters())
    vector = torch.randn(sum(p.numel() for p in parameters), dtype=torch.float64)
    plain = fisher_vector_product(policy_kl(old, policy(OBS)).mean(), parameters, 0.0)(vector)
    damped = fisher_vector_product(policy_kl(old, policy(OBS)).mean(), parameters, 0.1)(vector)
    torch.testing.assert_close(damped, plain + 0.1 * vector)


# -- the KL of every head ------------------------------------------------------------------------


def test_categorical_and_multicategorical_kl_against_the_definition():
    p_logits, q_logits = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p, q = Categorical(logits=p_logits), Categorical(logits=q_logits)
    torch.testing.assert_close(policy_kl(p, q), (p.probs * (p.probs.log() - q.probs.log())).sum(-1))
    torch.testing.assert_close(policy_kl(p, q), torch.distributions.kl_divergence(p, q))
    multi_p, multi_q = MultiCategorical(p_logits, [2, 4]), MultiCategorical(q_logits, [2, 4])
    expected = sum(
        torch.distributions.kl_divergence(Categorical(logits=a), Categorical(logits=b))
        for a, b in zip(p_logits.split([2, 4], -1), q_logits.split([2, 4], -1), strict=True)
    )
    torch.testing.assert_close(policy_kl(multi_p, multi_q), expected)


def test_masked_categorical_kl_is_finite_and_ignores_masked_actions():
    from pgrad.distributions import masked_logits

    logits_p, logits_q = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[True, False, True]] * 4)
    p = Categorical(logits=masked_logits(logits_p, mask))
    q = Categorical(logits=masked_logits(logits_q, mask))
    allowed_p = Categorical(logits=logits_p[:, [0, 2]])
    allowed_q = Categorical(logits=logits_q[:, [0, 2]])
    torch.testing.assert_close(policy_kl(p, q), torch.distributions.kl_divergence(allowed_p, allowed_q))


def test_gaussian_and_bernoulli_kl_sum_over_action_dimensions():
    loc = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = Independent(Normal(loc[0], torch.full((4, 3), 0.5, dtype=torch.float64)), 1)
    q = Independent(Normal(loc[1], torch.full((4, 3), 0.8, dtype=torch.float64)), 1)
    expected = torch.distributions.kl_divergence(p.base_dist, q.base_dist).sum(-1)
    torch.testing.assert_close(policy_kl(p, q), expected)
    bp, bq = Independent(Bernoulli(logits=loc[0]), 1), Independent(Bernoulli(logits=loc[1]), 1)
    pp, qp = bp.base_dist.probs, bq.base_dist.probs
    brute = (pp * (pp / qp).log() + (1 - pp) * ((1 - pp) / (1 - qp)).log()).sum(-1)
    torch.testing.assert_close(policy_kl(bp, bq), brute)


@pytest.mark.parametrize(
    "p_loc, p_scale, q_loc, q_scale",
    [(0.2, 0.5, -0.3, 0.7), (0.0, 2.0, 0.5, 0.3), (1.5, 0.2, 1.2, 0.25), (-3.0, 0.4, -2.5, 0.6)],
    ids=["inside", "wide-to-narrow", "loc-outside", "far-outside"],
)
def test_truncated_normal_kl_against_quadrature(p_loc, p_scale, q_loc, q_scale):
    p = TruncatedNormal(torch.tensor([p_loc], dtype=torch.float64), torch.tensor([p_scale], dtype=torch.float64), -1, 1)
    q = TruncatedNormal(torch.tensor([q_loc], dtype=torch.float64), torch.tensor([q_scale], dtype=torch.float64), -1, 1)
    nodes, weights = np.polynomial.legendre.leggauss(400)  # on [-1, 1], the distributions' support
    x = torch.from_numpy(nodes)[:, None]
    log_p, log_q = p.log_prob(x), q.log_prob(x)
    quadrature = float((torch.from_numpy(weights)[:, None] * log_p.exp() * (log_p - log_q)).sum())
    assert float(truncated_normal_kl(p, q)) == pytest.approx(quadrature, rel=1e-6, abs=1e-9)
    assert float(truncated_normal_kl(p, p)) == pytest.approx(0.0, abs=1e-12)


def test_truncated_normal_kl_far_inside_wide_bounds_is_the_gaussian_kl():
    loc, scale = torch.tensor([0.1, -0.2]), torch.tensor([0.3, 0.5])
    p, q = TruncatedNormal(loc, scale, -50.0, 50.0), TruncatedNormal(loc + 0.2, scale * 1.3, -50.0, 50.0)
    expected = torch.distributions.kl_divergence(Normal(loc, scale), Normal(loc + 0.2, scale * 1.3))
    torch.testing.assert_close(truncated_normal_kl(p, q), expected)


# -- the step and the line search ----------------------------------------------------------------


def test_trust_region_step_reaches_the_kl_radius_of_the_quadratic_model():
    fisher = random_spd(5, 4)
    direction = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    step = trust_region_step(direction, fisher @ direction, max_kl=0.01)
    assert float(0.5 * step @ fisher @ step) == pytest.approx(0.01, rel=1e-12)
    assert float(step @ direction) > 0  # along the direction, not against it
    zero = torch.zeros(5, dtype=torch.float64)
    assert torch.equal(trust_region_step(zero, zero, 0.01), zero)  # no gradient: no step


def quadratic_problem(target: float = 1.0):
    """Objective ``-(x - target)^2`` (improves towards ``target``), KL ``x^2 / 2`` from ``start = 0``;
    every evaluation is recorded."""
    calls = []

    def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
        calls.append(float(candidate))
        x = float(candidate)
        return -((x - target) ** 2), 0.5 * x * x

    return evaluate, calls


def test_line_search_accepts_the_full_step_when_it_improves_within_the_radius():
    evaluate, calls = quadratic_problem()
    params, backtracks = backtracking_line_search(
        evaluate, torch.zeros(1), torch.tensor([0.1]), -1.0, max_kl=0.01, shrink=0.5, max_steps=10
    )
    assert backtracks == 0 and float(params) == pytest.approx(0.1) and len(calls) == 1


def test_line_search_backtracks_to_the_first_step_inside_the_radius():
    evaluate, calls = quadratic_problem()
    # KL of x is x^2/2 <= 0.01 needs x <= 0.1414: from 1.0 halving gives 0.5, 0.25, 0.125 (accepted)
    params, backtracks = backtracking_line_search(
        evaluate, torch.zeros(1), torch.tensor([1.0]), -1.0, max_kl=0.01, shrink=0.5, max_steps=10
    )
    assert backtracks == 3 and float(params) == pytest.approx(0.125)
    assert calls == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_line_search_skips_steps_that_do_not_improve():
    evaluate, _ = quadratic_problem(target=0.05)  # objective at 0: -0.0025; at 0.1: -0.0025 (no gain); at 0.05: 0
    params, backtracks = backtracking_line_search(
        evaluate, torch.zeros(1), torch.tensor([0.1]), -0.0025, max_kl=1.0, shrink=0.5, max_steps=10
    )
    assert backtracks == 1 and float(params) == pytest.approx(0.05)


def test_line_search_returns_the_old_parameters_when_no_step_is_accepted():
    evaluate, calls = quadratic_problem(target=-1.0)  # the step goes the wrong way: never an improvement
    start = torch.tensor([0.0])
    params, backtracks = backtracking_line_search(
        evaluate, start, torch.tensor([1.0]), -1.0, max_kl=1.0, shrink=0.8, max_steps=7
    )
    assert backtracks is None and torch.equal(params, start) and len(calls) == 7
    nan_params, nan_backtracks = backtracking_line_search(
        lambda candidate: (math.nan, math.nan), start, torch.tensor([1.0]), -1.0, 1.0, 0.8, 3
    )
    assert nan_backtracks is None and torch.equal(nan_params, start)


# -- PPO's surrogate and KL penalty ------------------------------------------------------------


def test_surrogate_loss_is_minus_the_mean_ratio_times_advantage():
    log_probs = torch.tensor([-1.0, -0.5, -2.0], requires_grad=True)
    old = torch.tensor([-1.2, -0.5, -1.0])
    advantages = torch.tensor([1.0, -2.0, 0.5])
    loss, metrics = surrogate_loss(log_probs, old, advantages)
    ratio = (log_probs - old).exp()
    assert loss.item() == pytest.approx((-(ratio * advantages).mean()).item())
    loss.backward()  # at ratio 1 the gradient is the policy gradient's, -A / n
    assert float(log_probs.grad[1]) == pytest.approx(2.0 / 3.0)
    assert metrics["approx_kl"] >= 0.0


@pytest.mark.parametrize(
    "kl, expected",
    [(0.001, 0.5), (0.0066, 0.5), (0.0067, 1.0), (0.01, 1.0), (0.015, 1.0), (0.0151, 2.0), (0.1, 2.0)],
)
def test_adaptive_kl_beta_rule(kl, expected):
    """PPO paper sec. 4 with d_targ = 0.01 and beta = 1: halve below d_targ / 1.5 (0.00667),
    double above d_targ * 1.5 (0.015), else keep."""
    assert adapt_kl_beta(1.0, kl, 0.01) == expected
