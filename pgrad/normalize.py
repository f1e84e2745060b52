"""Running mean/variance normalisers that live inside the policy and are saved with it.

Both are ``nn.Module``s whose statistics are buffers, so they travel with ``state_dict()`` into
``policy.safetensors`` and into checkpoints. They only update while ``update()`` is called by the
collector during training; evaluation and ``predict`` apply them frozen.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance of a stream of batches, merged with Chan et al.'s parallel algorithm.

    Chan, Golub & LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
    sample variances": combining two sets' (mean, M2, count) is exact and order-independent.
    Statistics are kept in float64 so millions of updates do not drift.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # A tiny prior count (as in OpenAI baselines) keeps the first update well defined.
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def update(self, batch: torch.Tensor | np.ndarray) -> None:
        """Merge a batch of shape ``(B, *shape)`` into the running statistics."""
        # numpy on views of the buffers: called every env step, and for these tiny arrays numpy
        # costs a fraction of torch's per-op overhead (benchmarks/speed.py --profile).
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.mean.shape)
        if batch.shape[0] == 0:
            return
        if batch.shape[0] == 1:
            # one env: the batch mean is the row itself and its variance exactly 0, which is what
            # mean() and var() return, without their overhead on every step
            self.merge(batch[0], 0.0, 1)
        else:
            self.merge(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])

    def numpy_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, var, count)`` as numpy views of the buffers, looked up once (this runs every env
        step; ``nn.Module`` attribute lookups and ``.numpy()`` cost a microsecond each) and again only if a
        buffer was replaced (``load_state_dict`` copies into the same ones)."""
        buffers = self._buffers
        cached = self.__dict__.get("_views")
        if (
            cached is None
            or cached[0] is not buffers["mean"]
            or cached[1] is not buffers["var"]
            or cached[2] is not buffers["count"]
        ):
            cached = (
                buffers["mean"],
                buffers["var"],
                buffers["count"],
                buffers["mean"].numpy(),
                buffers["var"].numpy(),
                buffers["count"].numpy(),
            )
            self.__dict__["_views"] = cached
        return cached[3], cached[4], cached[5]

    def merge(self, batch_mean: np.ndarray, batch_var: np.ndarray | float, batch_count: float) -> None:
        """Merge the statistics of a batch seen elsewhere (e.g. in a worker process)."""
        if batch_count == 0:
            return
        mean, var, count = self.numpy_views()
        delta = batch_mean - mean
        total = count + batch_count
        m2 = var * count + batch_var * batch_count + delta * delta * (count * batch_count / total)
        mean += delta * (batch_count / total)
        var[...] = m2 / total
        count[...] = total


class ObservationNormalizer(nn.Module):
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with running statistics.

    The clip at 10 standard deviations follows SB3's VecNormalize and CleanRL's wrappers: it keeps
    one freak observation from producing huge network inputs early in training.
    """

    def __init__(
        self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8, columns: np.ndarray | None = None
    ) -> None:
        """``columns``: a bool mask over the last axis; only those columns are normalised, the
        others (image pixels) pass through unchanged. None: all."""
        super().__init__()
        self.stats = RunningMeanStd(shape)
        self.clip = clip
        self.eps = eps
        self.columns = None if columns is None else torch.as_tensor(np.asarray(columns, dtype=bool))

    def update(self, obs: torch.Tensor) -> None:
        """Add a batch of raw observations to the statistics (training only)."""
        self.stats.update(obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.stats.mean.to(obs.dtype)
        std = torch.sqrt(self.stats.var + self.eps).to(obs.dtype)
        normalized = ((obs - mean) / std).clamp(-self.clip, self.clip)
        if self.columns is None:
            return normalized
        return torch.where(self.columns, normalized, obs)


class RewardScaler(nn.Module):
    """Divide rewards by the running std of the discounted return, per env (no mean shift).

    This is the "reward scaling" of Engstrom et al. 2020 (sec. 3, "Implementation Matters") as done
    by baselines' VecNormalize: track ``G <- gamma * G + r`` per env, reset at episode ends, and
    scale each reward by ``1 / sqrt(Var[G] + eps)``. Shifting by the mean would change the optimal
    policy in tasks with termination, so only scaling is applied.
    """

    def __init__(self, n_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.stats = RunningMeanStd(())
        self.register_buffer("discounted_return", torch.zeros(n_envs, dtype=torch.float64))
        self.gamma = gamma
        self.clip = clip
        self.eps = eps

    @torch.no_grad()
    def scale(self, rewards: torch.Tensor, episode_ended: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Scale a ``(n_envs,)`` row of rewards; ``episode_ended`` marks envs whose episode ended now."""
        return torch.from_numpy(self.scale_array(rewards.numpy(), episode_ended.numpy(), update))

    def scale_array(self, rewards: np.ndarray, episode_ended: np.ndarray, update: bool = True) -> np.ndarray:
        """:meth:`scale` on numpy arrays (what the collector calls every step; numpy on views of
        the buffers costs a fraction of torch's per-op overhead for arrays this small)."""
        if update:
            discounted_return = self.discounted_return.numpy()  # a view: updated in place
            discounted_return *= self.gamma
            discounted_return += rewards.astype(np.float64)
            self.stats.update(discounted_return)
            discounted_return[episode_ended] = 0.0
        std = np.sqrt(self.stats.numpy_views()[1] + self.eps).astype(rewards.dtype)
        # np.minimum(np.maximum(...)): np.clip without its wrapper, which costs more than the maths here
        return np.minimum(np.maximum(rewards / std, -self.clip), self.clip)
