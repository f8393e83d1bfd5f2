"""Residual bottleneck block and conv-BN-ReLU unit of the stacked hourglass.

The block is the pre-activation bottleneck of Newell et al.'s stacked hourglass
(and of the coarse-to-fine volumetric network that reuses it):
BN-ReLU-conv1x1(C/2) -> BN-ReLU-conv3x3(C/2) -> BN-ReLU-conv1x1(C), added to a
skip path that is the identity, or a 1x1 convolution when the input width
differs from C. Every layer here is Keras-serializable (package 'pose3d_zoo')
and runs under mixed precision (variables float32, compute in the policy's
dtype).
"""
from __future__ import annotations

import keras

from zoo.layers.normalization import PACKAGE, BatchNormalization


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvBNReLU(keras.layers.Layer):
  """conv(k x k, stride 1, same) -> BatchNorm -> ReLU ('lin' in hourglass)."""

  def __init__(self, filters: int, kernel_size: int = 1, **kwargs):
    super().__init__(**kwargs)
    if filters < 1:
      raise ValueError(f'ConvBNReLU filters must be >= 1, got {filters}')
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.conv = keras.layers.Conv2D(self.filters, self.kernel_size,
                                    padding='same', name='conv')
    self.bn = BatchNormalization(name='bn')

  def build(self, input_shape):
    self.conv.build(input_shape)
    self.bn.build(input_shape[:-1] + (self.filters,))
    self.built = True

  def call(self, x, training=None):
    return keras.ops.relu(self.bn(self.conv(x), training=training))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'kernel_size': self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Residual(keras.layers.Layer):
  """Pre-activation bottleneck residual block with `filters` output channels."""

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    if filters < 2:
      raise ValueError(f'Residual filters must be >= 2 (the bottleneck has '
                       f'filters // 2 channels), got {filters}')
    self.filters = int(filters)
    half = self.filters // 2
    self.bn1 = BatchNormalization(name='bn1')
    self.conv1 = keras.layers.Conv2D(half, 1, name='conv1')
    self.bn2 = BatchNormalization(name='bn2')
    self.conv2 = keras.layers.Conv2D(half, 3, padding='same', name='conv2')
    self.bn3 = BatchNormalization(name='bn3')
    self.conv3 = keras.layers.Conv2D(self.filters, 1, name='conv3')
    self.skip = None  # a 1x1 conv, created in build() when widths differ

  def build(self, input_shape):
    in_channels = input_shape[-1]
    if in_channels is None:
      raise ValueError('Residual needs a known channel dimension, got input '
                       f'shape {input_shape}')
    half_shape = tuple(input_shape[:-1]) + (self.filters // 2,)
    self.bn1.build(input_shape)
    self.conv1.build(input_shape)
    self.bn2.build(half_shape)
    self.conv2.build(half_shape)
    self.bn3.build(half_shape)
    self.conv3.build(half_shape)
    if in_channels != self.filters:
      self.skip = keras.layers.Conv2D(self.filters, 1, name='skip')
      self.skip.trainable = self.trainable  # frozen before build stays frozen
      self.skip.build(input_shape)
    self.built = True

  def call(self, x, training=None):
    y = self.conv1(keras.ops.relu(self.bn1(x, training=training)))
    y = self.conv2(keras.ops.relu(self.bn2(y, training=training)))
    y = self.conv3(keras.ops.relu(self.bn3(y, training=training)))
    return y + (self.skip(x) if self.skip is not None else x)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters}
