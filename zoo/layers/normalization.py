"""Batch normalisation as one fused TensorFlow op, in the compute dtype.

Keras 3's `BatchNormalization` casts a bfloat16 input to float32 and builds
the moments, the normalisation and their gradients from a dozen separate
elementwise and reduction ops. On a CPU those ops are memory-bound and, under
mixed_bfloat16, cost more than the convolutions around them (a batch-64
16x16x64 block, forward and backward: 41 ms for Keras' layer against 5 ms
for the fused op; BENCHMARKS.md, "Training speed").

`BatchNormalization` here is a drop-in subclass with the same variables (gamma, beta,
moving_mean, moving_variance, float32), the same config and the same maths:
normalisation by the biased batch variance in training, by the moving
statistics otherwise, moving averages updated with `momentum` from the
biased batch variance, as the Keras layer does. It runs TensorFlow's
`FusedBatchNormV3` (oneDNN on x86), which takes bfloat16 or float16 input,
accumulates its statistics in float32 and returns the input's dtype, so the
activations stay in the compute dtype. Inputs other than 4D channels-last
(and masks, renorm, synchronised BN) fall back to the Keras layer.

It keeps Keras' class name on purpose: a `.weights.h5` file names the
members of a list of layers after their class (`batch_normalization`,
`batch_normalization_1`, ...), so the name keeps every weights file written
with Keras' layer loadable, and the other way round.
"""
from __future__ import annotations

import keras
import tensorflow as tf

PACKAGE = 'pose3d_zoo'  # the Keras serialisation package of every zoo layer


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
  """keras.layers.BatchNormalization computed by one fused op (see module)."""

  def _fusable(self, inputs, mask) -> bool:
    rank = inputs.shape.rank
    return (keras.backend.backend() == 'tensorflow' and rank == 4 and
            self.axis in (-1, 3) and mask is None and not self.renorm and
            not self.synchronized)

  def call(self, inputs, training=None, mask=None):
    inputs = tf.convert_to_tensor(inputs)
    if not self._fusable(inputs, mask):
      return super().call(inputs, training=training, mask=mask)
    if inputs.dtype not in (tf.float32, tf.bfloat16, tf.float16):
      inputs = tf.cast(inputs, self.compute_dtype)
    channels = inputs.shape[-1]
    scale = (tf.cast(self.gamma, tf.float32) if self.scale
             else tf.ones([channels], tf.float32))
    offset = (tf.cast(self.beta, tf.float32) if self.center
              else tf.zeros([channels], tf.float32))
    if training and self.trainable:
      empty = tf.constant([], tf.float32)
      outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
          x=inputs, scale=scale, offset=offset, mean=empty, variance=empty,
          epsilon=self.epsilon, exponential_avg_factor=1.0,
          data_format='NHWC', is_training=True)
      # The op returns the unbiased (Bessel-corrected) variance; Keras'
      # moving variance averages the biased one that normalised the batch.
      count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
      variance = variance * (tf.maximum(count - 1., 0.) /
                             tf.maximum(count, 1.))
      momentum = self.momentum
      self.moving_mean.assign(self.moving_mean * momentum +
                              tf.stop_gradient(mean) * (1. - momentum))
      self.moving_variance.assign(self.moving_variance * momentum +
                                  tf.stop_gradient(variance) * (1. - momentum))
    else:
      outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
          x=inputs, scale=scale, offset=offset,
          mean=tf.cast(self.moving_mean, tf.float32),
          variance=tf.cast(self.moving_variance, tf.float32),
          epsilon=self.epsilon, exponential_avg_factor=1.0,
          data_format='NHWC', is_training=False)
    return tf.cast(outputs, self.compute_dtype)
