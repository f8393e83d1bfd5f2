"""The hourglass module and the link between stacked hourglasses.

`Hourglass` is Newell et al.'s recursive encoder-decoder (ECCV 2016), as the
coarse-to-fine volumetric network (Pavlakos et al. 2017) uses it: at each of
`depth` levels, an upper branch of residual blocks at the current resolution
and a lower branch (max-pool 2x, residuals, the next level, residuals,
nearest-neighbour upsampling 2x), summed. Width is constant (`filters`), so an
hourglass maps [B, H, W, C] to [B, H, W, C]; H and W must be divisible by
2**depth.

`StackLink` builds the next stack's input from the previous one:
next = x + conv1x1(features) + conv1x1(heatmaps), the intermediate-supervision
link of the stacked hourglass (the "dashed lines" of the c2f paper's Fig. 2).
"""
from __future__ import annotations

import keras

from zoo.layers.residual import PACKAGE, Residual


def _residual_chain(filters: int, count: int, prefix: str) -> list[Residual]:
  return [Residual(filters, name=f'{prefix}_{i}') for i in range(count)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class Hourglass(keras.layers.Layer):
  """Recursive hourglass: `depth` levels, `num_residuals` blocks per branch."""

  def __init__(self, filters: int, depth: int = 4, num_residuals: int = 1,
               **kwargs):
    super().__init__(**kwargs)
    if depth < 1:
      raise ValueError(f'Hourglass depth must be >= 1, got {depth}')
    if num_residuals < 1:
      raise ValueError(f'Hourglass num_residuals must be >= 1, got '
                       f'{num_residuals}')
    self.filters = int(filters)
    self.depth = int(depth)
    self.num_residuals = int(num_residuals)
    self.up = _residual_chain(self.filters, self.num_residuals, 'up')
    self.pool = keras.layers.MaxPooling2D(2, name='pool')
    self.low1 = _residual_chain(self.filters, self.num_residuals, 'low1')
    if self.depth > 1:
      self.inner = Hourglass(self.filters, self.depth - 1, self.num_residuals,
                             name='inner')
      self.low2 = []
    else:
      self.inner = None
      self.low2 = _residual_chain(self.filters, self.num_residuals, 'low2')
    self.low3 = _residual_chain(self.filters, self.num_residuals, 'low3')
    self.upsample = keras.layers.UpSampling2D(2, interpolation='nearest',
                                              name='upsample')

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    factor = 2 ** self.depth
    for axis, size in zip(('height', 'width'), input_shape[1:3]):
      if size is not None and size % factor:
        raise ValueError(f'Hourglass of depth {self.depth} needs the input '
                         f'{axis} divisible by {factor}, got input shape '
                         f'{input_shape}')
    shape = input_shape[:-1] + (self.filters,)
    low_shape = (shape[0],) + tuple(
        None if s is None else s // 2 for s in shape[1:3]) + (self.filters,)
    for i, layer in enumerate(self.up):
      layer.build(input_shape if i == 0 else shape)
    for i, layer in enumerate(self.low1):
      first = low_shape[:-1] + (input_shape[-1],)
      layer.build(first if i == 0 else low_shape)
    if self.inner is not None:
      self.inner.build(low_shape)
    for layer in self.low2 + self.low3:
      layer.build(low_shape)
    self.built = True

  def call(self, x, training=None):
    up = x
    for layer in self.up:
      up = layer(up, training=training)
    low = self.pool(x)
    for layer in self.low1:
      low = layer(low, training=training)
    if self.inner is not None:
      low = self.inner(low, training=training)
    for layer in self.low2 + self.low3:
      low = layer(low, training=training)
    return up + self.upsample(low)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'depth': self.depth, 'num_residuals': self.num_residuals}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StackLink(keras.layers.Layer):
  """next = x + conv1x1(features) + conv1x1(heatmaps), all `filters` wide.

  Call with a list [x, features, heatmaps]: x the previous stack's input,
  features its post-hourglass features, heatmaps its predicted heatmaps
  ([B, H, W, channels], e.g. J * d channels for a volume).
  """

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.features_proj = keras.layers.Conv2D(self.filters, 1,
                                             name='features_proj')
    self.heatmaps_proj = keras.layers.Conv2D(self.filters, 1,
                                             name='heatmaps_proj')

  def build(self, input_shape):
    x_shape, features_shape, heatmaps_shape = input_shape
    if x_shape[-1] is not None and x_shape[-1] != self.filters:
      raise ValueError(f'StackLink({self.filters}) needs x with {self.filters} '
                       f'channels, got shape {x_shape}')
    self.features_proj.build(features_shape)
    self.heatmaps_proj.build(heatmaps_shape)
    self.built = True

  def call(self, inputs):
    x, features, heatmaps = inputs
    heatmaps = keras.ops.cast(heatmaps, self.compute_dtype)
    return x + self.features_proj(features) + self.heatmaps_proj(heatmaps)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[0])

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters}
