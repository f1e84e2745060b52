"""The observation layout (pgrad/observations.py) and the encoder (pgrad/encoders.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgrad.encoders import ObservationEncoder
from pgrad.errors import ConfigError, UnsupportedSpaceError
from pgrad.normalize import ObservationNormalizer
from pgrad.observations import ObservationLayout, env_row, is_single_observation, select_keys, stack_rows
from pgrad.policy import ActorCriticPolicy


def test_flat_box_and_discrete_are_the_plain_vectors():
    box = ObservationLayout(spaces.Box(-1, 1, (3,)))
    assert box.plain and box.size == 3
    np.testing.assert_array_equal(box.flatten(np.array([[1, 2, 3]])), [[1.0, 2.0, 3.0]])
    discrete = ObservationLayout(spaces.Discrete(4, start=1))
    assert discrete.plain and discrete.size == 4
    np.testing.assert_array_equal(discrete.flatten(np.array([1, 4])), [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_multidiscrete_is_one_hot_per_entry_and_multibinary_its_bits():
    layout = ObservationLayout(spaces.MultiDiscrete([2, 3], start=[1, 0]))
    assert not layout.plain and layout.size == 5
    np.testing.assert_array_equal(layout.flatten(np.array([2, 1])), [[0, 1, 0, 1, 0]])
    bits = ObservationLayout(spaces.MultiBinary([2, 2]))
    np.testing.assert_array_equal(bits.flatten(np.array([[[1, 0], [0, 1]]] * 2)), [[1, 0, 0, 1]] * 2)


def test_dict_keys_go_in_the_space_order_and_tuples_in_theirs():
    space = spaces.Dict({"b": spaces.Box(-1, 1, (2,)), "a": spaces.Discrete(3)})
    layout = ObservationLayout(space)
    assert layout.keys == ["a", "b"]  # Gymnasium sorts the keys of a Dict built from a dict
    batch = {"b": np.array([[0.5, -0.5], [1.0, 0.0]], np.float32), "a": np.array([2, 0])}
    np.testing.assert_array_equal(layout.flatten(batch), [[0, 0, 1, 0.5, -0.5], [1, 0, 0, 1.0, 0.0]])
    assert [entry["key"] for entry in layout.describe()] == ["a", "b"]
    nested = ObservationLayout(spaces.Tuple([spaces.Discrete(2), spaces.Dict({"x": spaces.Box(0, 1, (1,))})]))
    assert nested.keys == ["0", "1.x"]
    np.testing.assert_array_equal(nested.flatten((1, {"x": np.array([0.25])})), [[0, 1, 0.25]])


@pytest.mark.parametrize(
    "shape, channels_last, chw",
    [((7, 7, 3), True, (3, 7, 7)), ((10, 10, 4), True, (4, 10, 10)), ((4, 84, 84), False, (4, 84, 84))],
)
def test_image_layout_finds_the_channel_axis(shape, channels_last, chw):
    layout = ObservationLayout(spaces.Box(0, 255, shape, np.uint8))
    (piece,) = layout.images
    assert piece.channels_last is channels_last and piece.image_shape == chw and not layout.plain


def test_images_are_scaled_to_unit_and_stored_channels_first():
    layout = ObservationLayout(spaces.Box(0, 255, (4, 4, 3), np.uint8))
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    flat = layout.flatten(image)
    np.testing.assert_allclose(flat.reshape(3, 4, 4), np.moveaxis(image, -1, 0) / 255.0, rtol=1e-6)
    unit = ObservationLayout(spaces.Box(0.0, 1.0, (1, 5, 5), np.float32))
    assert unit.images and unit.images[0].image_shape == (1, 5, 5)
    # a 3-D float Box outside [0, 1] is not an image: flattened as a vector
    assert not ObservationLayout(spaces.Box(-1.0, 1.0, (1, 5, 5), np.float32)).images


def test_normalisation_skips_image_columns():
    space = spaces.Dict({"image": spaces.Box(0, 255, (1, 4, 4), np.uint8), "speed": spaces.Box(-9, 9, (2,))})
    layout = ObservationLayout(space)
    mask = layout.normalized_columns()
    assert mask.sum() == 2 and not mask[:16].any()
    normalizer = ObservationNormalizer((layout.size,), columns=mask)
    batch = torch.from_numpy(
        layout.flatten({"image": np.full((3, 1, 4, 4), 255, np.uint8), "speed": np.arange(6.0).reshape(3, 2)})
    )
    normalizer.update(batch)
    out = normalizer(batch)
    torch.testing.assert_close(out[:, :16], batch[:, :16])  # pixels untouched
    assert abs(float(out[:, 16:].mean())) < 1e-3  # the vector key normalised


def test_unencodable_key_names_the_key_and_the_way_out():
    space = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "mission": spaces.Text(10)})
    with pytest.raises(UnsupportedSpaceError, match=r"observation key 'mission' is Text.*--set obs_keys=KEY,KEY"):
        ObservationLayout(space)
    assert list(select_keys(space, ["image"]).spaces) == ["image"]
    with pytest.raises(UnsupportedSpaceError, match=r"obs_keys names \['colour'\], not keys.*its keys"):
        select_keys(space, ["colour"])
    with pytest.raises(UnsupportedSpaceError, match="obs_keys selects keys of a Dict observation"):
        select_keys(spaces.Box(0, 1, (2,)), ["image"])


def test_ambiguous_image_layout_is_an_error():
    with pytest.raises(UnsupportedSpaceError, match=r"cannot tell its channel axis"):
        ObservationLayout(spaces.Box(0, 255, (5, 3, 4), np.uint8))


def test_rows_and_batches_of_nested_observations():
    batch = {"a": np.arange(6).reshape(3, 2), "b": np.array([0, 1, 2])}
    row = env_row(batch, 1)
    np.testing.assert_array_equal(row["a"], [2, 3])
    stacked = stack_rows([env_row(batch, i) for i in range(3)])
    np.testing.assert_array_equal(stacked["a"], batch["a"])
    space = spaces.Dict({"a": spaces.Box(0, 9, (2,)), "b": spaces.Discrete(3)})
    assert is_single_observation(row, space) and not is_single_observation(batch, space)


def test_encoder_is_the_identity_without_images():
    layout = ObservationLayout(spaces.Dict({"a": spaces.Box(0, 9, (2,)), "b": spaces.Discrete(3)}))
    assert ObservationEncoder(layout).identity
    policy = ActorCriticPolicy(layout.space, spaces.Discrete(2))
    assert policy.encoder is None


def test_encoder_runs_a_cnn_per_image_and_passes_the_rest():
    space = spaces.Dict(
        {"pixels": spaces.Box(0, 255, (40, 40, 3), np.uint8), "small": spaces.Box(0, 255, (2, 6, 6), np.uint8)}
    )
    space.spaces["z"] = spaces.Box(-1, 1, (3,))
    layout = ObservationLayout(space)
    encoder = ObservationEncoder(layout, "auto", 16)
    assert [type(cnn).__name__ for cnn in encoder.cnns] == ["NatureCNN", "SmallCNN"]
    assert encoder.out_features == 16 + 16 + 3
    flat = torch.rand(5, layout.size)
    features = encoder(flat)
    assert features.shape == (5, 35)
    torch.testing.assert_close(features[:, 32:], flat[:, -3:])  # the vector key passes through
    with pytest.raises(ConfigError, match="cnn=nature needs images of at least 36x36.*small is 6x6"):
        ObservationEncoder(layout, "nature", 16)


def test_policy_reuses_encoder_features_only_while_nothing_changed():
    space = spaces.Box(0, 255, (4, 6, 6), np.uint8)
    policy = ActorCriticPolicy(space, spaces.Discrete(2), cnn_features=8)
    obs = torch.rand(3, policy.obs_size)
    first = policy.encode(obs)
    assert policy.encode(obs) is first  # the critic's call reuses the actor's features
    with torch.no_grad():
        next(policy.encoder.parameters()).add_(1.0)  # an optimiser step changes the weights in place
    second = policy.encode(obs)
    assert second is not first and not torch.equal(second, first)
    assert policy.encode(obs.clone()) is not second
