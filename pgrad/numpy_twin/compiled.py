"""The rollout's per-step policy call compiled with numba, when numba is installed.

Why: a rollout step of a small MLP policy issues ~30 numpy calls (normalise, three layers,
sample, log-probability), each costing 0.5-2 us of Python and numpy dispatch at these sizes,
more than its arithmetic (BENCHMARKS.md, "Where a PPO env step goes"). One compiled function
doing the same maths costs a fraction of that. Tianshou compiles its return computations with
numba for the same reason.

What it computes is :class:`pgrad.numpy_twin.policy.NumpyActorCritic`'s ``normalize(obs,
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

It is used when numba can be imported (``pip install 'pgrad[numba]'``) and the environment
variable ``PGRAD_NUMBA`` is not ``0``; summary.json records which (``compiled_act``). No fastmath
(no reordered sums, no fused multiply-adds), so the compiled code gives the same numbers on
every CPU it compiles for. The first use on a machine compiles for a few seconds; numba caches
the result on disk.
"""

from __future__ import annotations

import numba
import numpy as np

# activation codes after a dense layer
NO_ACTIVATION, TANH, RELU = 0, 1, 2

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
                value = y[b, j] + bias[j]
                if activation == 1:
                    value = tanh(value)
                elif activation == 2:
                    value = max(value, np.float32(0.0))
                y[b, j] = value
        x = y
    return x


@jit
def act_gaussian(obs, network, std, half_precision, log_normalizer, noise):
    out = forward(obs, *network)  # (B, action_dim [+ 1]): the means, then V if the policy has a critic
    rows, dims = noise.shape
    action = np.empty((rows, dims), np.float32)
    log_prob = np.empty(rows, np.float32)
    value = np.empty(rows, np.float32)
    for b in range(rows):
        squared = np.float32(0.0)
        for j in range(dims):
            action[b, j] = out[b, j] + std[j] * noise[b, j]
            deviation = action[b, j] - out[b, j]
            squared += deviation * deviation * half_precision[j]
        log_prob[b] = -squared - log_normalizer
        value[b] = out[b, dims] if out.shape[1] > dims else np.float32(0.0)  # (a policy without a critic)
    return action, log_prob, value


@jit
def act_categorical(obs, network, noise):
    out = forward(obs, *network)  # (B, n_actions [+ 1]): the logits, then V if the policy has a critic
    rows, n_actions = noise.shape
    action = np.empty(rows, np.int64)
    log_prob = np.empty(rows, np.float32)
    value = np.empty(rows, np.float32)
    log_p = np.empty(n_actions, np.float32)
    finite = True
    for b in range(rows):
        # log-softmax as the twin's: shift by the max, subtract log(sum(exp(shifted)))
        largest = out[b, 0]
        for j in range(1, n_actions):
            largest = max(largest, out[b, j])
        total = np.float32(0.0)
        for j in range(n_actions):
            log_p[j] = out[b, j] - largest
            total += np.exp(log_p[j])
        log_total = np.log(total)
        best, best_index = np.float32(-1.0), 0
        for j in range(n_actions):
            log_p[j] -= log_total
            probability = np.exp(log_p[j])
            finite = finite and np.isfinite(probability)
            quotient = probability / noise[b, j]
            if quotient > best:  # the first maximum, as argmax
                best, best_index = quotient, j
        action[b] = best_index
        log_prob[b] = log_p[best_index]
        value[b] = out[b, n_actions] if out.shape[1] > n_actions else np.float32(0.0)
    return action, log_prob, value, finite


@jit
def values(obs, network):
    out = forward(obs, *network)  # the actor's outputs, then V: the network act() runs
    return out[:, out.shape[1] - 1].copy()


@jit
def tanh_array(x, out):  # for the accuracy test
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])
