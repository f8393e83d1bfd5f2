"""The stacked-hourglass stem: image [B, S, S, 3] -> features [B, S/4, S/4, C].

As in Newell et al.'s code (and the c2f paper, which reuses it): conv 7x7
stride 2 to `conv_channels` (64) with BN-ReLU, a residual block to
`mid_channels` (128), max-pool 2x, a residual block at `mid_channels`, and a
residual block to the feature width `filters` (256). Downsampling is x4 in
total, so a 256 crop gives 64x64 heatmaps. Input sides must be divisible
by 4.
"""
from __future__ import annotations

import keras

from zoo.layers.normalization import BatchNormalization
from zoo.layers.residual import PACKAGE, Residual


@keras.saving.register_keras_serializable(package=PACKAGE)
class Stem(keras.layers.Layer):
  """Image to stride-4 features of width `filters`."""

  def __init__(self, filters: int = 256, conv_channels: int = 64,
               mid_channels: int = 128, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.conv_channels = int(conv_channels)
    self.mid_channels = int(mid_channels)
    self.conv = keras.layers.Conv2D(self.conv_channels, 7, strides=2,
                                    padding='same', name='conv')
    self.bn = BatchNormalization(name='bn')
    self.res1 = Residual(self.mid_channels, name='res1')
    self.pool = keras.layers.MaxPooling2D(2, name='pool')
    self.res2 = Residual(self.mid_channels, name='res2')
    self.res3 = Residual(self.filters, name='res3')

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    for axis, size in zip(('height', 'width'), input_shape[1:3]):
      if size is not None and size % 4:
        raise ValueError(f'Stem needs the input {axis} divisible by 4, got '
                         f'input shape {input_shape}')
    half = lambda s: None if s is None else s // 2  # noqa: E731
    shape2 = (input_shape[0], half(input_shape[1]), half(input_shape[2]))
    shape4 = (input_shape[0], half(shape2[1]), half(shape2[2]))
    self.conv.build(input_shape)
    self.bn.build(shape2 + (self.conv_channels,))
    self.res1.build(shape2 + (self.conv_channels,))
    self.res2.build(shape4 + (self.mid_channels,))
    self.res3.build(shape4 + (self.mid_channels,))
    self.built = True

  def call(self, image, training=None):
    x = keras.ops.relu(self.bn(self.conv(image), training=training))
    x = self.res1(x, training=training)
    x = self.pool(x)
    x = self.res2(x, training=training)
    return self.res3(x, training=training)

  def compute_output_shape(self, input_shape):
    quarter = lambda s: None if s is None else s // 4  # noqa: E731
    return (input_shape[0], quarter(input_shape[1]), quarter(input_shape[2]),
            self.filters)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'conv_channels': self.conv_channels,
            'mid_channels': self.mid_channels}

