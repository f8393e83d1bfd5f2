"""Tests for zoo/layers/residual.py against a NumPy reference."""
import keras
import numpy as np
import pytest

from zoo.layers import ConvBNReLU, Residual


def _randomise(layer, rng):
  for w in layer.weights:
    value = rng.normal(0., 0.5, w.shape)
    if 'variance' in w.path:
      value = rng.uniform(0.5, 2., w.shape)
    w.assign(value.astype(np.float32))


def _bn(x, layer):
  return ((x - layer.moving_mean.numpy()) / np.sqrt(
      layer.moving_variance.numpy() + layer.epsilon) * layer.gamma.numpy()
          + layer.beta.numpy())


def _conv(x, layer):
  """'same' convolution, stride 1, written as a sum over kernel offsets."""
  kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
  kh, kw = kernel.shape[:2]
  pad = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  h, w = x.shape[1:3]
  out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
  for dy in range(kh):
    for dx in range(kw):
      out += pad[:, dy:dy + h, dx:dx + w] @ kernel[dy, dx]
  return out + bias


def _relu(x):
  return np.maximum(x, 0.)


@pytest.mark.parametrize('in_channels', [8, 4])
def test_residual_matches_numpy(in_channels):
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  layer = Residual(8)
  x = rng.normal(size=(2, 5, 6, in_channels)).astype(np.float32)
  layer.build(x.shape)
  _randomise(layer, rng)
  y = layer(x, training=False).numpy()
  h = _conv(_relu(_bn(x, layer.bn1)), layer.conv1)
  h = _conv(_relu(_bn(h, layer.bn2)), layer.conv2)
  h = _conv(_relu(_bn(h, layer.bn3)), layer.conv3)
  skip = x if in_channels == 8 else _conv(x, layer.skip)
  np.testing.assert_allclose(y, h + skip, rtol=1e-4, atol=1e-4)
  assert (layer.skip is None) == (in_channels == 8)
  assert layer.conv1.filters == 4 and layer.conv2.kernel_size == (3, 3)


def test_residual_param_count():
  c_in, c, half = 6, 8, 4
  layer = Residual(c)
  layer.build((None, 4, 4, c_in))
  expected = (4 * c_in + c_in * half + half          # bn1, conv1
              + 4 * half + 9 * half * half + half    # bn2, conv2
              + 4 * half + half * c + c              # bn3, conv3
              + c_in * c + c)                        # skip
  assert layer.count_params() == expected


def test_conv_bn_relu_and_serialisation():
  layer = ConvBNReLU(5, 3, name='lin')
  y = layer(np.ones((1, 4, 4, 2), np.float32))
  assert y.shape == (1, 4, 4, 5) and float(np.min(y)) >= 0.
  for obj in (layer, Residual(8, name='res')):
    config = keras.layers.serialize(obj)
    assert config['registered_name'].startswith('pose3d_zoo>')
    clone = keras.layers.deserialize(config)
    assert type(clone) is type(obj) and clone.get_config() == obj.get_config()


def test_bad_widths_are_rejected():
  with pytest.raises(ValueError, match='filters'):
    Residual(1)
  with pytest.raises(ValueError, match='filters'):
    ConvBNReLU(0)
