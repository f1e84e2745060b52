"""Loss functions against their definitions, written out by hand."""

import torch

from pgrad.losses import policy_gradient_loss

torch.set_num_threads(1)


def test_policy_gradient_loss_is_minus_mean_advantage_times_log_prob():
    log_probs = torch.tensor([-0.5, -1.0, -2.0, -0.1])
    advantages = torch.tensor([1.0, -2.0, 0.5, 3.0])
    loss, metrics = policy_gradient_loss(log_probs, advantages)
    expected = -(0.5 * -1.0 + (-1.0) * -2.0 + (-2.0) * 0.5 + (-0.1) * 3.0) / 4  # -mean(A * log pi)
    torch.testing.assert_close(loss, torch.tensor(expected))
    assert metrics == {"policy_loss": loss.item()}


def test_policy_gradient_loss_gradient_is_the_score_function_estimator():
    """d loss / d logits = -mean_i A_i * d log pi(a_i) / d logits, and advantages get no gradient."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=generator, requires_grad=True)
    actions = torch.tensor([0, 2, 1, 1, 0, 2])
    advantages = torch.randn(6, generator=generator, requires_grad=True)
    log_probs = torch.distributions.Categorical(logits=logits).log_prob(actions)
    loss, _ = policy_gradient_loss(log_probs, advantages)
    loss.backward()
    # score of a softmax policy: d log pi(a) / d logits = onehot(a) - softmax(logits)
    score = torch.nn.functional.one_hot(actions, 3) - torch.softmax(logits.detach(), dim=-1)
    torch.testing.assert_close(logits.grad, -(advantages.detach()[:, None] * score) / 6)
    assert advantages.grad is None


def test_normalize_advantages_numpy_equals_torch_per_row():
    import numpy as np

    from pgrad.losses import normalize_advantages

    advantages = np.random.default_rng(0).normal(2.0, 3.0, (3, 17)).astype(np.float32)  # (seeds, batch)
    out_np = normalize_advantages(advantages)
    out_t = normalize_advantages(torch.from_numpy(advantages))
    np.testing.assert_allclose(out_np, out_t.numpy(), rtol=1e-5, atol=1e-6)
    for row, expected in zip(advantages, out_np):  # each row on its own, with torch.std's unbiased std
        t = torch.from_numpy(row)
        np.testing.assert_allclose(expected, ((t - t.mean()) / (t.std() + 1e-8)).numpy(), rtol=1e-5, atol=1e-6)
    single = np.array([1.5], dtype=np.float32)
    assert normalize_advantages(single) is single  # one sample has no std: left as is
