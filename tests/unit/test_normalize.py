import numpy as np
import torch

from pgrad.normalize import ObservationNormalizer, RewardScaler, RunningMeanStd


def test_running_mean_std_matches_numpy_over_uneven_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 3))
    stats = RunningMeanStd((3,))
    start = 0
    for size in [1, 7, 100, 1, 391, 500]:
        stats.update(torch.as_tensor(data[start : start + size]))
        start += size
    np.testing.assert_allclose(stats.mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.var.numpy(), data.var(0), rtol=1e-4)


def test_observation_normalizer_is_part_of_the_state_dict_and_clips():
    norm = ObservationNormalizer((2,))
    norm.update(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    assert set(norm.state_dict()) == {"stats.mean", "stats.var", "stats.count"}
    out = norm(torch.tensor([[1.0, 20.0], [1e9, -1e9]]))
    np.testing.assert_allclose(out[0].numpy(), [0.0, 0.0], atol=1e-4)
    assert out[1].tolist() == [10.0, -10.0]


def test_reward_scaler_divides_by_discounted_return_std_and_resets_at_episode_end():
    scaler = RewardScaler(n_envs=1, gamma=0.5)
    for _ in range(50):
        scaler.scale(torch.tensor([1.0]), torch.tensor([False]))
    # G converges to 2 with almost no variance left only at the start: scale stays finite
    assert torch.isfinite(scaler.scale(torch.tensor([1.0]), torch.tensor([True]))).all()
    assert scaler.discounted_return.item() == 0.0


def test_updates_after_load_state_dict_land_in_the_saved_buffers():
    source = RunningMeanStd((2,))
    source.update(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    target = RunningMeanStd((2,))
    target.load_state_dict(source.state_dict())
    target.update(np.array([[5.0, 10.0]]))
    reference = RunningMeanStd((2,))
    reference.update(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    reference.update(torch.tensor([[5.0, 10.0]]))
    for key, value in reference.state_dict().items():
        assert torch.allclose(target.state_dict()[key], value), key
