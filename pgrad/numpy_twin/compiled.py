"""One policy's rollout step, minibatch update and Adam step, and the collector's step, compiled
with numba when installed.

Why: a rollout step of a small MLP policy issues ~30 numpy calls (normalise, three layers,
sample, log-probability), and a PPO minibatch update ~80, each costing 0.5-2 us of Python and
numpy dispatch at these sizes, more than its arithmetic (BENCHMARKS.md, "Where a PPO env step
goes"). One compiled function doing the same maths costs a fraction of that. Tianshou compiles
its return computations with numba for the same reason. docs/architecture.md, "The compiled
path", says what is compiled, what stays equal to the bit, and why it is optional.

The module has five parts: the rollout step (below), the minibatch update (PPO's and A2C's
loss and gradient, see its section), the Adam step (:func:`adam_step`), the rest of the
collector's step (the env's action and the bookkeeping, :func:`record_transition`) and the
minibatch advantage normalisation (:func:`normalize_advantages`). The last two, and the Adam
step, give the same numbers as their numpy versions to the bit.

The rollout step computes :class:`pgrad.numpy_twin.policy.NumpyActorCritic`'s ``normalize(obs,
update=True)`` followed by ``act`` on the fused network (its ``normalize_and_act``), step for step:

* the running statistics merge the batch as :meth:`pgrad.normalize.RunningMeanStd.update` does
  (the batch mean and variance summed over rows in row order, then the same float64 merge, in
  the same order of operations), so the statistics are equal to the bit;
* normalisation is the same float32 arithmetic, so the normalised observations are equal to the bit;
* each dense layer is a sum over inputs in input order, plus the bias, then tanh or ReLU, with
  the fused network's zero blocks skipped. Two differences from numpy, both of float32 rounding
  size: the order in which the products are added (BLAS has its own), and tanh, which is a
  rational approximation within 8 ulp (numpy's float32 tanh is within 2; see :func:`tanh`);
* the random numbers are drawn by torch, from the same generator, in the same amount and shape,
  before the call (a Gaussian's ``normal_`` noise, a categorical's ``exponential_`` noise whose
  ``argmax(p / q)`` is the action ``torch.multinomial`` picks: :func:`.actions.sample_categorical`).

Values for bootstraps go through the same compiled network (:meth:`NumpyActorCritic.value`), so a
V(s') and the V(s) a rollout stored are one computation. tests/unit/test_compiled_act.py compares
the compiled step with the numpy twin on policies of every supported shape.

All three are used when numba can be imported (``pip install 'pgrad[numba]'``) and the
environment variable ``PGRAD_NUMBA`` is not ``0``; summary.json records which (``compiled_act``).
No fastmath (no reordered sums, no fused multiply-adds), so the compiled loops give the same
numbers on every CPU (the update's BLAS products, like numpy's, depend on the CPU's kernels).
The first use on a machine compiles them (~12 s here); numba caches the result on disk.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls SciPy's BLAS: loaded here, see set_compute_threads)

from pgrad.numpy_twin.actions import HALF_LOG_2PI, LOG_SQRT_2PI
from pgrad.numpy_twin.layers import NO_ACTIVATION, RELU, TANH  # the activation after each dense layer

# tanh(x) ~ x * P(x^2) / Q(x^2) for |x| <= TANH_CLAMP, +-1 beyond (float32 rounds tanh there to
# within an ulp of 1): the coefficients of Eigen's generic_fast_tanh_float, lowest order first
TANH_CLAMP = np.float32(7.90531110763549805)
TANH_P = tuple(
    np.float32(value)
    for value in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
TANH_Q = tuple(
    np.float32(value)
    for value in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
)

# cache=True: compiled once per machine (beside this file, or in numba's user cache when that
# folder is read-only), not once per process.
# error_model="numpy": division by zero gives inf/nan as in numpy (the Python model's check
# per division also keeps LLVM from vectorising a loop)
jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(inline="always", error_model="numpy")
def tanh(x):
    # A rational approximation of float32 tanh (the one Eigen uses, generic_fast_tanh_float):
    # libm's tanhf is a call per element that LLVM cannot vectorise, ~9 ns each here against
    # under 1 ns for this. Within 8 ulp of the exact tanh over all inputs (numpy's float32
    # tanh: 2 ulp); tests/unit/test_compiled_act.py measures it.
    clamped = TANH_CLAMP if x > TANH_CLAMP else x  # (written so that a NaN stays NaN)
    clamped = -TANH_CLAMP if clamped < -TANH_CLAMP else clamped
    x2 = clamped * clamped
    p = x2 * TANH_P[6] + TANH_P[5]
    p = x2 * p + TANH_P[4]
    p = x2 * p + TANH_P[3]
    p = x2 * p + TANH_P[2]
    p = x2 * p + TANH_P[1]
    p = x2 * p + TANH_P[0]
    q = x2 * TANH_Q[3] + TANH_Q[2]
    q = x2 * q + TANH_Q[1]
    q = x2 * q + TANH_Q[0]
    return clamped * p / q


@numba.njit(inline="always", error_model="numpy")
def activate(value, activation):
    """The activation with code ``activation`` (pgrad/numpy_twin/layers.py) applied to one value."""
    if activation == TANH:
        return tanh(value)
    if activation == RELU:
        return max(value, np.float32(0.0))
    return value


@jit
def merge_batch(raw, mean, var, count):
    # RunningMeanStd.update(raw), operation for operation: the batch's mean and (biased)
    # variance in float64 as numpy's mean(axis=0) and var(axis=0) sum over rows (in row
    # order), then RunningMeanStd.merge:
    # m2 = var * count + batch_var * n + delta^2 * (count * n / total); mean += delta * (n / total)
    rows = raw.shape[0]
    previous = count[0]
    total = previous + rows
    share = previous * rows / total
    step = rows / total
    for i in range(raw.shape[1]):
        batch_sum = 0.0
        for b in range(rows):
            batch_sum += np.float64(raw[b, i])
        batch_mean = batch_sum / rows
        squares = 0.0
        for b in range(rows):
            centred = np.float64(raw[b, i]) - batch_mean
            squares += centred * centred
        batch_var = squares / rows
        delta = batch_mean - mean[i]
        m2 = var[i] * previous + batch_var * rows + delta * delta * share
        mean[i] += delta * step
        var[i] = m2 / total
    count[0] = total


@jit
def normalize(raw, mean, var, eps, clip, out):
    # (obs - float32(mean)) / float32(sqrt(var + eps)), clipped: the twin's float32 arithmetic
    for i in range(raw.shape[1]):
        centre = np.float32(mean[i])
        scale = np.float32(np.sqrt(var[i] + eps))
        for b in range(raw.shape[0]):
            value = (raw[b, i] - centre) / scale
            out[b, i] = min(max(value, -clip), clip)


@jit
def add_scaled(row, scale, weights):
    # row += scale * weights, one product and one sum per element (no fused multiply-add, no
    # reordering): a loop from 0 over contiguous views, which LLVM vectorises
    for j in range(row.shape[0]):
        row[j] += scale * weights[j]


@jit
def forward(x, weights, biases, activations, row_splits, column_splits):
    # weights[k]: (in, out) C-contiguous, so the inner loop runs along contiguous memory.
    # A fused layer after the first is block-diagonal (numpy_twin.layers.fuse): inputs below
    # row_splits[k] feed only the outputs below column_splits[k], the others only the rest;
    # the zero blocks are skipped (exact zeros add nothing). The first layer is dense.
    for k in range(len(weights)):
        weight, bias, activation = weights[k], biases[k], activations[k]
        n_in, n_out = weight.shape
        row_split, column_split = row_splits[k], column_splits[k]
        y = np.zeros((x.shape[0], n_out), np.float32)
        for b in range(x.shape[0]):
            left, right = y[b, :column_split], y[b, column_split:]
            for i in range(row_split):
                add_scaled(left, x[b, i], weight[i, :column_split])
            for i in range(row_split, n_in):
                add_scaled(right, x[b, i], weight[i, column_split:])
            for j in range(n_out):
                y[b, j] = activate(y[b, j] + bias[j], activation)
        x = y
    return x


@jit
def observe(raw, statistics, out):
    """The twin's ``normalize(raw, update=True)`` into ``out (B, obs_size)``: ``raw`` as float32
    (rounded as numpy casts), then, with the normaliser (``statistics``: ``(normalize_obs, mean,
    var, count, eps, clip)``), merged into the running statistics and normalised in place."""
    normalize_obs, mean, var, count, eps, clip = statistics
    for b in range(raw.shape[0]):
        for i in range(raw.shape[1]):
            out[b, i] = np.float32(raw[b, i])
    if normalize_obs:
        merge_batch(out, mean, var, count)
        normalize(out, mean, var, eps, clip, out)  # element by element, so in place is safe


@jit
def rollout_step_gaussian(
    raw, statistics, network, std, half_precision, log_normalizer, noise,
    t, obs_buffer, action_buffer, log_prob_buffer, value_buffer, bounds,
):  # fmt: skip
    """A rollout step of a Gaussian policy, written into row ``t`` of the buffers ``(T, B, ...)``:
    the normalised observations, ``action = mean + std * noise``, its log-probability, and V
    (0 without a critic). Returns the actions the envs receive, rescaled from [-1, 1] to
    ``bounds = (True, low, high)`` as :func:`rescale_into` does, or an empty ``(0, 0)`` array
    with ``bounds = (False, ...)`` (the caller maps the actions itself)."""
    obs = obs_buffer[t]
    observe(raw, statistics, obs)
    out = forward(obs, *network)  # (B, action_dim [+ 1]): the means, then V if the policy has a critic
    action, log_prob, value = action_buffer[t], log_prob_buffer[t], value_buffer[t]
    rows, dims = noise.shape
    for b in range(rows):
        squared = np.float32(0.0)
        for j in range(dims):
            action[b, j] = out[b, j] + std[j] * noise[b, j]
            deviation = action[b, j] - out[b, j]
            squared += deviation * deviation * half_precision[j]
        log_prob[b] = -squared - log_normalizer
        value[b] = out[b, dims] if out.shape[1] > dims else np.float32(0.0)  # (a policy without a critic)
    rescale, low, high = bounds
    if not rescale:
        return np.empty((0, 0), np.float32)
    env_action = np.empty_like(action)
    rescale_into(action, low, high, env_action)
    return env_action


@jit
def log_softmax_row(logits, out):
    """``out`` = log p of one row of logits, as the twin's log_softmax: shift by the max, then
    subtract log(sum(exp(shifted)))."""
    largest = logits[0]
    for j in range(1, logits.shape[0]):
        largest = max(largest, logits[j])
    total = np.float32(0.0)
    for j in range(logits.shape[0]):
        out[j] = logits[j] - largest
        total += np.exp(out[j])
    log_total = np.log(total)
    for j in range(logits.shape[0]):
        out[j] -= log_total


@jit
def rollout_step_categorical(
    raw, statistics, network, noise, t, obs_buffer, action_buffer, log_prob_buffer, value_buffer
):
    """:func:`rollout_step_gaussian` for a categorical policy: the action is ``argmax(p / noise)``
    with Exp(1) noise (what ``torch.multinomial`` picks). Returns False if a probability is not
    finite (the caller raises, as torch does)."""
    obs = obs_buffer[t]
    observe(raw, statistics, obs)
    out = forward(obs, *network)  # (B, n_actions [+ 1]): the logits, then V if the policy has a critic
    action, log_prob, value = action_buffer[t], log_prob_buffer[t], value_buffer[t]
    rows, n_actions = noise.shape
    log_p = np.empty(n_actions, np.float32)
    finite = True
    for b in range(rows):
        log_softmax_row(out[b, :n_actions], log_p)
        best, best_index = np.float32(-1.0), 0
        for j in range(n_actions):
            probability = np.exp(log_p[j])
            finite = finite and np.isfinite(probability)
            quotient = probability / noise[b, j]
            if quotient > best:  # the first maximum, as argmax
                best, best_index = quotient, j
        action[b] = best_index
        log_prob[b] = log_p[best_index]
        value[b] = out[b, n_actions] if out.shape[1] > n_actions else np.float32(0.0)
    return finite


@jit
def values(obs, network):
    out = forward(obs, *network)  # the actor's outputs, then V: the network act() runs
    return out[:, out.shape[1] - 1].copy()


@jit
def tanh_array(x, out):  # for the accuracy test
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])


# -- the minibatch update: PPO's and A2C's loss and gradient ------------------------------------
#
# NumpyPolicyGradient.step_gradient (pgrad/numpy_twin/gradient.py) for one policy, in one call:
# the same formulas in the same order, torch's conventions for min/max ties and clamp edges
# included (that module's docstring says which). The matrix products are BLAS's, as numpy's (numba
# calls the same sgemm); the elementwise work runs in loops instead of ~80 numpy calls, each of
# which cost more than its arithmetic at a minibatch of 64. A network is ``(weights, biases,
# weight_grads, bias_grads, activations)``: torch-layout weights ``(out, in)`` and gradient views
# into the flat gradient buffer, an activation code after each dense layer.


@jit
def forward_keeping_outputs(x, weights, biases, activations):
    """Every dense layer's output after its activation, the input first: ``[x, a_1, ..., a_L]``."""
    outputs = [x]
    for k in range(len(weights)):
        y = np.dot(x, weights[k].T)  # (B, out)
        bias, activation = biases[k], activations[k]
        for b in range(y.shape[0]):
            row = y[b]
            for j in range(y.shape[1]):
                row[j] = activate(row[j] + bias[j], activation)
        outputs.append(y)
        x = y
    return outputs


@jit
def backward(weights, weight_grads, bias_grads, activations, outputs, grad):
    """Backpropagate ``grad`` (of the last output) into each layer's weight and bias gradient."""
    for k in range(len(weights) - 1, -1, -1):
        out, activation = outputs[k + 1], activations[k]
        if activation != NO_ACTIVATION:
            through = np.empty_like(grad)
            for b in range(grad.shape[0]):
                for j in range(grad.shape[1]):
                    if activation == TANH:  # tanh' = 1 - tanh^2, from the output, as torch does
                        through[b, j] = grad[b, j] * (np.float32(1.0) - out[b, j] * out[b, j])
                    else:  # ReLU: zero where the output is 0 (torch's threshold_backward)
                        through[b, j] = grad[b, j] * np.float32(out[b, j] > np.float32(0.0))
            grad = through
        weight_grads[k][:, :] = np.dot(grad.T, outputs[k])  # (out, in)
        bias_grad = bias_grads[k]
        bias_grad[:] = 0.0
        for b in range(grad.shape[0]):
            bias_grad += grad[b]
        if k > 0:  # the observation needs no gradient
            grad = np.dot(grad, weights[k])


@jit
def surrogate(log_probs, old_log_probs, advantages, clip_coef, use_clip, inv_batch):
    """dL/d log pi per row, and (policy loss, approx KL, clip fraction) summed over rows (the
    caller divides by the batch). ``use_clip``: PPO's clipped surrogate (Schulman et al. 2017,
    eq. 7), else A2C's ``-mean(A log pi)`` (approx KL and clip fraction 0)."""
    rows = log_probs.shape[0]
    grad_log_probs = np.empty(rows, np.float32)
    loss = kl = clipped_rows = np.float32(0.0)
    low, high = np.float32(1.0 - clip_coef), np.float32(1.0 + clip_coef)
    for b in range(rows):
        advantage = advantages[b]
        if not use_clip:
            loss += advantage * log_probs[b]
            grad_log_probs[b] = -advantage * inv_batch
            continue
        log_ratio = log_probs[b] - old_log_probs[b]
        ratio = np.exp(log_ratio)
        unclipped = ratio * advantage
        clipped = min(max(ratio, low), high) * advantage
        loss += min(unclipped, clipped)
        # d min / d ratio: to the smaller term, half to each on a tie; clamp passes inside [low, high]
        to_unclipped = np.float32(unclipped < clipped) + np.float32(0.5) * np.float32(unclipped == clipped)
        inside = np.float32((ratio >= low) and (ratio <= high))
        d_objective = advantage * (to_unclipped + (np.float32(1.0) - to_unclipped) * inside)
        grad_log_probs[b] = -(d_objective * ratio) * inv_batch
        kl += (ratio - np.float32(1.0)) - log_ratio
        clipped_rows += np.float32(abs(ratio - np.float32(1.0)) > np.float32(clip_coef))
    return grad_log_probs, -loss, kl, clipped_rows


@jit
def value_gradient(values, old_values, returns, vf_clip_coef, use_vf_clip, vf_coef, inv_batch):
    """dL/dV per row ``(B, 1)`` for ``vf_coef * 0.5 mean(e)``, ``e`` the squared error, PPO2-clipped
    around the old values if ``use_vf_clip``; and the sum of ``e`` over rows."""
    rows = values.shape[0]
    grad = np.empty((rows, 1), np.float32)
    factor = np.float32(vf_coef * 0.5) * inv_batch
    clip = np.float32(vf_clip_coef)
    total = np.float32(0.0)
    for b in range(rows):
        error = values[b] - returns[b]
        squared = error * error
        d_squared = 2 * error
        if use_vf_clip:
            delta = values[b] - old_values[b]
            clipped_error = old_values[b] + min(max(delta, -clip), clip) - returns[b]
            squared_clipped = clipped_error * clipped_error
            to_unclipped = np.float32(squared > squared_clipped) + np.float32(0.5) * np.float32(
                squared == squared_clipped
            )
            inside = np.float32((delta >= -clip) and (delta <= clip))
            d_squared = to_unclipped * d_squared + (np.float32(1.0) - to_unclipped) * inside * (2 * clipped_error)
            squared = max(squared, squared_clipped)
        total += squared
        grad[b, 0] = factor * d_squared
    return grad, total


@jit
def clip_global_norm(flat_grad, max_grad_norm, use_norm_clip):
    """The gradient's global norm, and the gradient scaled as torch.nn.utils.clip_grad_norm_ does."""
    if not use_norm_clip:
        return np.nan
    norm = np.float64(np.sqrt(np.dot(flat_grad, flat_grad)))  # a float32 sum and root, as numpy's
    flat_grad *= np.float32(min(max_grad_norm / (norm + 1e-6), 1.0))
    return norm


@jit
def gradient_gaussian(
    obs, actions, old_log_probs, old_values, advantages, returns, actor, critic, log_std, log_std_grad,
    flat_grad, clip_coef, use_clip, vf_clip_coef, use_vf_clip, vf_coef, ent_coef, max_grad_norm, use_norm_clip,
):  # fmt: skip
    """The loss's gradient for a Gaussian policy with a state-independent std, into ``flat_grad``;
    returns the metrics (policy loss, approx KL, clip fraction, value loss, entropy, grad norm, action std)."""
    rows, dims = actions.shape
    inv_batch = np.float32(1.0 / rows)
    actor_outputs = forward_keeping_outputs(obs, actor[0], actor[1], actor[4])
    means = actor_outputs[-1]
    scale = np.exp(log_std)  # Normal takes log(scale), not log_std itself
    log_scale = np.log(scale)
    variance = scale * scale
    half_precision = np.float32(0.5) / variance
    diff = actions - means
    log_probs = np.empty(rows, np.float32)
    for b in range(rows):
        total = np.float32(0.0)
        for j in range(dims):
            total += -(diff[b, j] * diff[b, j]) * half_precision[j] - log_scale[j] - np.float32(LOG_SQRT_2PI)
        log_probs[b] = total
    entropy = np.float32(0.0)
    for j in range(dims):
        entropy += np.float32(0.5 + HALF_LOG_2PI) + log_scale[j]
    grad_log_probs, policy_loss, kl, clipped_rows = surrogate(
        log_probs, old_log_probs, advantages, clip_coef, use_clip, inv_batch
    )
    critic_outputs = forward_keeping_outputs(obs, critic[0], critic[1], critic[4])
    grad_values, squared_errors = value_gradient(
        critic_outputs[-1][:, 0], old_values, returns, vf_clip_coef, use_vf_clip, vf_coef, inv_batch
    )
    # d log p / d mean = (a - mean) / var; d log p / d log_std = (a - mean)^2 / var - 1, summed over
    # rows; d mean(H) / d log_std = 1
    inv_variance = np.float32(1.0) / variance
    grad_out = np.empty((rows, dims), np.float32)
    log_std_grad[:] = 0.0
    for b in range(rows):
        for j in range(dims):
            grad_out[b, j] = grad_log_probs[b] * diff[b, j] * inv_variance[j]
            log_std_grad[j] += grad_log_probs[b] * (diff[b, j] * diff[b, j] * inv_variance[j] - np.float32(1.0))
    for j in range(dims):
        log_std_grad[j] -= np.float32(ent_coef)
    backward(actor[0], actor[2], actor[3], actor[4], actor_outputs, grad_out)
    backward(critic[0], critic[2], critic[3], critic[4], critic_outputs, grad_values)
    grad_norm = clip_global_norm(flat_grad, max_grad_norm, use_norm_clip)
    action_std = np.float64(scale.sum()) / dims
    return (
        np.float64(policy_loss) / rows,
        np.float64(kl) / rows,
        np.float64(clipped_rows) / rows,
        0.5 * (np.float64(squared_errors) / rows),
        np.float64(entropy),
        grad_norm,
        action_std,
    )


@jit
def gradient_categorical(
    obs, actions, old_log_probs, old_values, advantages, returns, actor, critic,
    flat_grad, clip_coef, use_clip, vf_clip_coef, use_vf_clip, vf_coef, ent_coef, max_grad_norm, use_norm_clip,
):  # fmt: skip
    """The loss's gradient for a categorical policy, into ``flat_grad``; returns the metrics
    (policy loss, approx KL, clip fraction, value loss, entropy, grad norm)."""
    rows = actions.shape[0]
    inv_batch = np.float32(1.0 / rows)
    actor_outputs = forward_keeping_outputs(obs, actor[0], actor[1], actor[4])
    logits = actor_outputs[-1]
    n_actions = logits.shape[1]
    log_p = np.empty_like(logits)
    probs = np.empty_like(logits)
    log_probs = np.empty(rows, np.float32)
    entropy = np.empty(rows, np.float32)
    entropy_sum = np.float32(0.0)
    for b in range(rows):
        log_softmax_row(logits[b], log_p[b])
        row_entropy = np.float32(0.0)
        for j in range(n_actions):
            probs[b, j] = np.exp(log_p[b, j])
            row_entropy += log_p[b, j] * probs[b, j]
        entropy[b] = -row_entropy
        entropy_sum += entropy[b]
        log_probs[b] = log_p[b, actions[b]]
    grad_log_probs, policy_loss, kl, clipped_rows = surrogate(
        log_probs, old_log_probs, advantages, clip_coef, use_clip, inv_batch
    )
    critic_outputs = forward_keeping_outputs(obs, critic[0], critic[1], critic[4])
    grad_values, squared_errors = value_gradient(
        critic_outputs[-1][:, 0], old_values, returns, vf_clip_coef, use_vf_clip, vf_coef, inv_batch
    )
    # d log p_a / d logits = onehot(a) - p; dH/dlogits = -p (log p + H), the loss has -ent_coef mean(H)
    entropy_factor = np.float32(ent_coef) * inv_batch
    grad_out = np.empty_like(logits)
    for b in range(rows):
        for j in range(n_actions):
            grad_out[b, j] = grad_log_probs[b] * (np.float32(j == actions[b]) - probs[b, j])
            if ent_coef != 0.0:
                grad_out[b, j] += entropy_factor * probs[b, j] * (log_p[b, j] + entropy[b])
    backward(actor[0], actor[2], actor[3], actor[4], actor_outputs, grad_out)
    backward(critic[0], critic[2], critic[3], critic[4], critic_outputs, grad_values)
    grad_norm = clip_global_norm(flat_grad, max_grad_norm, use_norm_clip)
    return (
        np.float64(policy_loss) / rows,
        np.float64(kl) / rows,
        np.float64(clipped_rows) / rows,
        0.5 * (np.float64(squared_errors) / rows),
        np.float64(entropy_sum) / rows,
        grad_norm,
        np.nan,
    )


# -- the optimiser step ---------------------------------------------------------------------------


@jit
def adam_step(
    grad, exp_avg, exp_avg_sq, flat_params, param_views, offsets, one_minus_beta1, one_minus_beta2, beta2,
    inverse_correction2_sqrt, lr_over_correction1, eps,
):  # fmt: skip
    """NumpyAdam's step (pgrad/numpy_twin/optim.py) element by element: the same float32
    operations in the same order, so the same numbers to the bit; then each parameter's storage
    (``param_views[k]``, starting at ``offsets[k]`` of the flat buffers) gets its new values."""
    for i in range(grad.shape[0]):
        g = grad[i]
        m = exp_avg[i] + (g - exp_avg[i]) * one_minus_beta1  # torch's lerp: m + (1 - b1)(g - m)
        v = exp_avg_sq[i] * beta2 + (g * g) * one_minus_beta2
        exp_avg[i], exp_avg_sq[i] = m, v
        # p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
        flat_params[i] -= m / (np.sqrt(v) * inverse_correction2_sqrt + eps) * lr_over_correction1
    for k in range(len(param_views)):
        view, start = param_views[k], offsets[k]
        for i in range(view.shape[0]):
            view[i] = flat_params[start + i]


# -- the collector's step -------------------------------------------------------------------------
# Around the policy's call, a rollout step maps the action to the env's and moves the episode
# counters and flags on; in numpy each is a dozen calls on arrays of N elements, which together
# cost more than the policy's call (BENCHMARKS.md, "Where a PPO env step goes").

UNIT_LOW, UNIT_HIGH, ONE, HALF = np.float32(-1.0), np.float32(1.0), np.float32(1.0), np.float32(0.5)


@jit
def rescale_into(raw, low, high, out):
    """:func:`pgrad.policy.box_env_action` with ``rescale`` for float32 ``raw (B, d)``, ``low``,
    ``high (d,)``, into ``out``: clip to [-1, 1], then ``low + (unit + 1) * 0.5 * (high - low)``,
    the same float32 operations in the same order, so the same numbers to the bit (NaN stays NaN)."""
    for b in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            unit = raw[b, j]
            if unit < UNIT_LOW:  # comparisons with NaN are False: NaN passes, as np.maximum/minimum let it
                unit = UNIT_LOW
            if unit > UNIT_HIGH:
                unit = UNIT_HIGH
            out[b, j] = low[j] + (unit + ONE) * HALF * (high[j] - low[j])


@jit
def record_transition(
    t, observation, reward, terminated, truncated, next_step_autoreset, pending_reset, episode_return, episode_length,
    reward_buffer, terminated_buffer, truncated_buffer, valid_buffer, time_buffer,
):  # fmt: skip
    """:func:`pgrad.rollout.record_transition` env by env, the same numbers to the bit: rewards
    are added to the float64 returns as numpy adds them and rounded to float32 once."""
    n = reward.shape[0]
    for b in range(observation.shape[0]):
        for i in range(observation.shape[1]):
            if not np.isfinite(observation[b, i]):
                return -1, 0
    for i in range(n):
        if not np.isfinite(reward[i]):
            return -1, 0
    n_valid, n_ended = 0, 0
    for i in range(n):
        valid = not (next_step_autoreset and pending_reset[i])
        ends_terminal = valid and bool(terminated[i])
        ends_truncated = valid and bool(truncated[i]) and not ends_terminal
        r = reward[i] if valid else 0.0
        time_buffer[t, i] = episode_length[i]
        episode_return[i] += r
        if valid:
            episode_length[i] += 1
            n_valid += 1
        valid_buffer[t, i] = valid
        terminated_buffer[t, i] = ends_terminal
        truncated_buffer[t, i] = ends_truncated
        reward_buffer[t, i] = r
        ended = ends_terminal or ends_truncated
        n_ended += ended
        if next_step_autoreset:
            pending_reset[i] = ended
    return n_valid, n_ended


# -- the update's advantage normalisation ---------------------------------------------------------


@jit
def pairwise_run_sum(values, start, n):
    """The float32 sum of ``values[start:start + n]``, ``n <= 128``, as numpy adds such a run:
    below 8 one by one from 0, else in eight interleaved partial sums added as a tree, then the rest."""
    if n < 8:
        total = np.float32(0.0)
        for i in range(start, start + n):
            total += values[i]
        return total
    partial = values[start : start + 8].copy()
    whole = n - n % 8
    for i in range(8, whole, 8):
        for j in range(8):
            partial[j] += values[start + i + j]
    left = (partial[0] + partial[1]) + (partial[2] + partial[3])
    total = left + ((partial[4] + partial[5]) + (partial[6] + partial[7]))
    for i in range(start + whole, start + n):
        total += values[i]
    return total


@jit
def pairwise_sum(values):
    """The float32 sum of a contiguous ``values`` as numpy's reductions add it (pairwise
    summation: a run longer than 128 is split in two at a multiple of 8 and the halves' sums
    added), so the same number to the bit. numpy recurses; this walks the same tree with a stack
    of its own: a recursive version crashed the process when numba loaded it from its cache."""
    run_start, run_length = np.empty(130, np.int64), np.empty(130, np.int64)
    split = np.zeros(130, np.bool_)  # whether the run's halves were pushed
    sums = np.empty(130, np.float32)  # the finished runs' sums, in order
    run_start[0], run_length[0], runs, finished = 0, values.shape[0], 1, 0
    while runs > 0:
        start, n = run_start[runs - 1], run_length[runs - 1]
        if n <= 128:
            sums[finished] = pairwise_run_sum(values, start, n)
            finished += 1
            runs -= 1
        elif not split[runs - 1]:
            split[runs - 1] = True
            half = n // 2
            half -= half % 8
            # the second half below the first: the first is summed first, as numpy's recursion does
            run_start[runs], run_length[runs], split[runs] = start + half, n - half, False
            run_start[runs + 1], run_length[runs + 1], split[runs + 1] = start, half, False
            runs += 2
        else:  # both halves are summed: their sums are the last two
            sums[finished - 2] = sums[finished - 2] + sums[finished - 1]
            finished -= 1
            runs -= 1
    return sums[0]


@jit
def normalize_advantages(advantages):
    """:func:`pgrad.losses.normalize_advantages` of a float32 ``(B,)`` array, the same to the bit:
    numpy's float32 mean and unbiased std (sums from 0 as numpy's reduction starts, divisions
    rounded to float32 once), then ``(A - mean) / (std + 1e-8)``."""
    n = advantages.shape[0]
    if n < 2:
        return advantages
    mean = np.float32((np.float32(0.0) + pairwise_sum(advantages)) / n)
    centred = np.empty_like(advantages)
    squares = np.empty_like(advantages)
    for i in range(n):
        centred[i] = advantages[i] - mean
        squares[i] = centred[i] * centred[i]
    std = np.sqrt(np.float32((np.float32(0.0) + pairwise_sum(squares)) / (n - 1)))
    denominator = std + np.float32(1e-8)
    for i in range(n):
        centred[i] /= denominator
    return centred
