"""Convolutional Pose Machine stages (Wei et al. 2016), as Lifting from the
Deep uses them.

- `CPMTrunk`: the image CNN: `num_pools` blocks of (`convs_per_pool` k x k
  convs + ReLU, 3x3/2 max-pool), i.e. stride 2**num_pools (paper: three 9x9
  convs of 128 channels, stride 8, 368 px -> 46 x 46), then `post_convs`
  k x k convs at the output stride (CPM's VGG trunk has several convs per
  resolution and more after its last pool; the defaults 1 and 0 are the
  paper's three-conv trunk).
- `CPMStage1`: stage 1's belief maps from trunk features: 5x5 conv (32), 9x9
  conv (512), 1x1 conv (512), 1x1 conv to the belief channels.
- `CPMStage`: a later stage t >= 2: a 5x5 conv (32) of the shared trunk
  features, concatenated with the previous stage's belief maps and the
  centre map, then `num_convs` k x k convs (paper preset: 5 of 7x7, 128
  channels), a 1x1 conv (128) and a 1x1 conv to the belief channels.

Every conv but the last of a stage is followed by ReLU (optionally by
BatchNorm first: the original CPM has none; training from scratch on a CPU
budget converges much faster with it). The belief-map head is linear.
Registered Keras serializables (package 'pose3d_zoo'); mixed-precision safe.
"""
from __future__ import annotations

import keras

from zoo.layers.normalization import PACKAGE, BatchNormalization


def _conv_block(filters: int, kernel: int, batch_norm: bool, name: str):
  layers = [keras.layers.Conv2D(filters, kernel, padding='same',
                                use_bias=not batch_norm, name=f'{name}_conv')]
  if batch_norm:
    layers.append(BatchNormalization(name=f'{name}_bn'))
  layers.append(keras.layers.ReLU(name=f'{name}_relu'))
  return layers


class _Sequence(keras.layers.Layer):
  """A list of sublayers applied in order (built from shapes, no tracing)."""

  def _apply(self, layers, x, training):
    for layer in layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        x = layer(x, training=training)
      else:
        x = layer(x)
    return x

  def _build_seq(self, layers, shape):
    for layer in layers:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    return shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class CPMTrunk(_Sequence):
  """Image -> features at stride 2**num_pools ([B, S/2^p, S/2^p, channels])."""

  def __init__(self, channels: int = 128, kernel_size: int = 9,
               num_pools: int = 3, batch_norm: bool = False,
               convs_per_pool: int = 1, post_convs: int = 0, **kwargs):
    super().__init__(**kwargs)
    if (channels < 1 or kernel_size < 1 or num_pools < 1
        or convs_per_pool < 1 or post_convs < 0):
      raise ValueError(
          f'CPMTrunk needs channels, kernel_size, num_pools, convs_per_pool '
          f'>= 1 and post_convs >= 0; got {channels}, {kernel_size}, '
          f'{num_pools}, {convs_per_pool}, {post_convs}')
    self.channels = int(channels)
    self.kernel_size = int(kernel_size)
    self.num_pools = int(num_pools)
    self.batch_norm = bool(batch_norm)
    self.convs_per_pool = int(convs_per_pool)
    self.post_convs = int(post_convs)
    # With the defaults the layer list is the three-conv trunk's exactly, so
    # weights saved before these options existed still load.
    self.blocks = []
    for i in range(self.num_pools):
      for k in range(self.convs_per_pool):
        suffix = '' if k == 0 else f'_{k + 1}'
        self.blocks += _conv_block(self.channels, self.kernel_size,
                                   self.batch_norm, f'conv{i + 1}{suffix}')
      self.blocks.append(keras.layers.MaxPooling2D(3, 2, padding='same',
                                                   name=f'pool{i + 1}'))
    for k in range(self.post_convs):
      self.blocks += _conv_block(self.channels, self.kernel_size,
                                 self.batch_norm, f'post{k + 1}')

  def build(self, input_shape):
    self._build_seq(self.blocks, tuple(input_shape))
    self.built = True

  def call(self, image, training=None):
    return self._apply(self.blocks, image, training)

  def compute_output_shape(self, input_shape):
    shape = tuple(input_shape)
    for layer in self.blocks:
      shape = layer.compute_output_shape(shape)
    return shape

  def get_config(self):
    return {**super().get_config(), 'channels': self.channels,
            'kernel_size': self.kernel_size, 'num_pools': self.num_pools,
            'batch_norm': self.batch_norm,
            'convs_per_pool': self.convs_per_pool,
            'post_convs': self.post_convs}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CPMStage1(_Sequence):
  """Trunk features -> stage-1 belief maps (num_outputs channels, linear)."""

  def __init__(self, num_outputs: int, feature_channels: int = 32,
               mid_channels: int = 512, kernel_size: int = 9,
               batch_norm: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.num_outputs = int(num_outputs)
    self.feature_channels = int(feature_channels)
    self.mid_channels = int(mid_channels)
    self.kernel_size = int(kernel_size)
    self.batch_norm = bool(batch_norm)
    self.blocks = (
        _conv_block(self.feature_channels, 5, self.batch_norm, 'conv4')
        + _conv_block(self.mid_channels, self.kernel_size, self.batch_norm,
                      'conv5')
        + _conv_block(self.mid_channels, 1, self.batch_norm, 'conv6')
        + [keras.layers.Conv2D(self.num_outputs, 1, name='head')])

  def build(self, input_shape):
    self._build_seq(self.blocks, tuple(input_shape))
    self.built = True

  def call(self, features, training=None):
    return self._apply(self.blocks, features, training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.num_outputs,)

  def get_config(self):
    return {**super().get_config(), 'num_outputs': self.num_outputs,
            'feature_channels': self.feature_channels,
            'mid_channels': self.mid_channels,
            'kernel_size': self.kernel_size, 'batch_norm': self.batch_norm}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CPMStage(_Sequence):
  """[trunk features, previous beliefs, centre map] -> belief maps."""

  def __init__(self, num_outputs: int, channels: int = 128,
               kernel_size: int = 7, num_convs: int = 5,
               feature_channels: int = 32, batch_norm: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    if num_convs < 1:
      raise ValueError(f'CPMStage num_convs must be >= 1, got {num_convs}')
    self.num_outputs = int(num_outputs)
    self.channels = int(channels)
    self.kernel_size = int(kernel_size)
    self.num_convs = int(num_convs)
    self.feature_channels = int(feature_channels)
    self.batch_norm = bool(batch_norm)
    self.features = _conv_block(self.feature_channels, 5, self.batch_norm,
                                'features')
    self.blocks = []
    for i in range(self.num_convs):
      self.blocks += _conv_block(self.channels, self.kernel_size,
                                 self.batch_norm, f'mconv{i + 1}')
    self.blocks += _conv_block(self.channels, 1, self.batch_norm,
                               f'mconv{self.num_convs + 1}')
    self.blocks.append(keras.layers.Conv2D(self.num_outputs, 1, name='head'))

  def build(self, input_shape):
    trunk, beliefs, centre = (tuple(s) for s in input_shape)
    f = self._build_seq(self.features, trunk)
    merged = f[:-1] + (f[-1] + beliefs[-1] + centre[-1],)
    self._build_seq(self.blocks, merged)
    self.built = True

  def call(self, inputs, training=None):
    trunk, beliefs, centre = inputs
    f = self._apply(self.features, trunk, training)
    x = keras.ops.concatenate(
        [f, keras.ops.cast(beliefs, f.dtype), keras.ops.cast(centre, f.dtype)],
        axis=-1)
    return self._apply(self.blocks, x, training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[0][:-1]) + (self.num_outputs,)

  def get_config(self):
    return {**super().get_config(), 'num_outputs': self.num_outputs,
            'channels': self.channels, 'kernel_size': self.kernel_size,
            'num_convs': self.num_convs,
            'feature_channels': self.feature_channels,
            'batch_norm': self.batch_norm}
