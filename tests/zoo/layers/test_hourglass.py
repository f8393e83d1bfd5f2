"""Tests for zoo/layers/hourglass.py and zoo/layers/stem.py."""
import keras
import numpy as np
import pytest

from zoo.layers import Hourglass, Residual, StackLink, Stem


def _residual_params(channels):
  r = Residual(channels)
  r.build((None, 4, 4, channels))
  return r.count_params()


@pytest.mark.parametrize('depth,num_residuals', [(1, 1), (2, 1), (3, 2)])
def test_hourglass_shape_and_structure(depth, num_residuals):
  keras.utils.set_random_seed(0)
  layer = Hourglass(8, depth=depth, num_residuals=num_residuals)
  x = np.random.default_rng(0).normal(size=(2, 16, 8, 8)).astype(np.float32)
  y = layer(x, training=False)
  assert y.shape == x.shape
  # Each level has an upper, a pre- and a post-branch chain, the innermost
  # one more: (3 * depth + 1) chains of num_residuals residual blocks.
  assert layer.count_params() == ((3 * depth + 1) * num_residuals
                                  * _residual_params(8))
  assert layer.compute_output_shape((None, 16, 8, 8)) == (None, 16, 8, 8)


def test_hourglass_sees_the_whole_input():
  """Depth 2 on 8x8 reaches a 2x2 bottleneck: corners influence each other."""
  keras.utils.set_random_seed(1)
  layer = Hourglass(4, depth=2)
  x = np.zeros((1, 8, 8, 4), np.float32)
  base = layer(x, training=False).numpy()
  x[0, 7, 7] = 5.
  moved = layer(x, training=False).numpy()
  assert np.abs(moved[0, 0, 0] - base[0, 0, 0]).max() > 1e-6


def test_hourglass_rejects_indivisible_input():
  with pytest.raises(ValueError, match='divisible by 8'):
    Hourglass(4, depth=3).build((None, 12, 16, 4))
  with pytest.raises(ValueError, match='depth'):
    Hourglass(4, depth=0)


def test_stack_link_matches_numpy():
  keras.utils.set_random_seed(2)
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
  f = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
  hm = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  link = StackLink(6)
  y = link([x, f, hm]).numpy()
  fp, hp = link.features_proj, link.heatmaps_proj
  expected = (x + f @ fp.kernel.numpy()[0, 0] + fp.bias.numpy()
              + hm @ hp.kernel.numpy()[0, 0] + hp.bias.numpy())
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='channels'):
    StackLink(5).build([(None, 4, 4, 6), (None, 4, 4, 6), (None, 4, 4, 3)])


def test_stem_downsamples_by_four():
  keras.utils.set_random_seed(3)
  stem = Stem(16, conv_channels=8, mid_channels=12, name='stem')
  y = stem(np.zeros((1, 64, 32, 3), np.float32), training=False)
  assert y.shape == (1, 16, 8, 16)
  assert stem.compute_output_shape((None, 256, 256, 3)) == (None, 64, 64, 16)
  assert [l.name for l in (stem.res1, stem.res2, stem.res3)] == [
      'res1', 'res2', 'res3']
  assert stem.conv.strides == (2, 2) and stem.conv.kernel_size == (7, 7)
  with pytest.raises(ValueError, match='divisible by 4'):
    Stem(16).build((None, 66, 64, 3))


def test_layers_serialise():
  for layer in (Hourglass(8, depth=3, num_residuals=2, name='hourglass_0'),
                StackLink(8, name='link_0'),
                Stem(32, conv_channels=16, mid_channels=24, name='stem')):
    config = keras.layers.serialize(layer)
    assert config['registered_name'].startswith('pose3d_zoo>')
    clone = keras.layers.deserialize(config)
    assert clone.get_config() == layer.get_config()
    assert clone.name == layer.name
