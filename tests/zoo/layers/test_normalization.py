"""Tests for zoo/layers/normalization.py: the fused layer against NumPy
batch-norm maths and against Keras' own BatchNormalization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers.normalization import BatchNormalization


def _numpy_train_step(x, gamma, beta, moving_mean, moving_var, momentum, eps):
  mean = x.mean(axis=(0, 1, 2))
  var = x.var(axis=(0, 1, 2))  # biased, as batch norm normalises with
  y = (x - mean) / np.sqrt(var + eps) * gamma + beta
  return (y, moving_mean * momentum + mean * (1 - momentum),
          moving_var * momentum + var * (1 - momentum))


@pytest.fixture
def float32_policy():
  previous = keras.mixed_precision.global_policy().name
  keras.mixed_precision.set_global_policy('float32')
  yield
  keras.mixed_precision.set_global_policy(previous)


def _layer(channels, rng, **kwargs):
  layer = BatchNormalization(**kwargs)
  layer.build((None, 5, 6, channels))
  layer.gamma.assign(rng.uniform(0.5, 2., channels).astype(np.float32))
  layer.beta.assign(rng.normal(0., 1., channels).astype(np.float32))
  layer.moving_mean.assign(rng.normal(0., 1., channels).astype(np.float32))
  layer.moving_variance.assign(rng.uniform(0.5, 2., channels).astype(np.float32))
  return layer


def test_training_step_matches_numpy(float32_policy):
  rng = np.random.default_rng(0)
  layer = _layer(4, rng, momentum=0.9)
  x = rng.normal(2., 3., (3, 5, 6, 4)).astype(np.float32)
  expected = _numpy_train_step(x, layer.gamma.numpy(), layer.beta.numpy(),
                               layer.moving_mean.numpy(),
                               layer.moving_variance.numpy(), 0.9,
                               layer.epsilon)
  y = layer(x, training=True).numpy()
  np.testing.assert_allclose(y, expected[0], atol=1e-4)
  np.testing.assert_allclose(layer.moving_mean.numpy(), expected[1], atol=1e-5)
  np.testing.assert_allclose(layer.moving_variance.numpy(), expected[2],
                             rtol=1e-5)


def test_inference_uses_moving_statistics(float32_policy):
  rng = np.random.default_rng(1)
  layer = _layer(3, rng)
  x = rng.normal(0., 1., (2, 5, 6, 3)).astype(np.float32)
  expected = ((x - layer.moving_mean.numpy()) /
              np.sqrt(layer.moving_variance.numpy() + layer.epsilon) *
              layer.gamma.numpy() + layer.beta.numpy())
  np.testing.assert_allclose(layer(x, training=False).numpy(), expected,
                             atol=1e-5)


def test_gradients_match_keras_batch_normalization(float32_policy):
  rng = np.random.default_rng(2)
  fused = _layer(4, rng)
  reference = keras.layers.BatchNormalization()
  reference.build((None, 5, 6, 4))
  reference.set_weights(fused.get_weights())
  x = tf.constant(rng.normal(0., 2., (3, 5, 6, 4)).astype(np.float32))
  weights = tf.constant(rng.normal(0., 1., (3, 5, 6, 4)).astype(np.float32))
  grads = []
  for layer in (fused, reference):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.square(layer(x, training=True)) * weights)
    grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
  for got, want in zip(*grads):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3,
                               atol=1e-3)
  for got, want in zip(fused.non_trainable_weights,
                       reference.non_trainable_weights):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)


def test_bfloat16_policy_keeps_activations_in_bfloat16():
  previous = keras.mixed_precision.global_policy().name
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    rng = np.random.default_rng(3)
    layer = _layer(4, rng)
    x = rng.normal(0., 1., (2, 5, 6, 4)).astype(np.float32)
    y = layer(tf.cast(x, tf.bfloat16), training=True)
    assert y.dtype == tf.bfloat16
    assert layer.moving_mean.dtype == 'float32'
    expected = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) +
                                                  layer.epsilon)
    expected = expected * layer.gamma.numpy() + layer.beta.numpy()
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), expected,
                               atol=0.05, rtol=0.02)
  finally:
    keras.mixed_precision.set_global_policy(previous)


def test_other_ranks_fall_back_to_keras(float32_policy):
  layer = BatchNormalization()
  x = np.random.default_rng(4).normal(0., 1., (8, 3)).astype(np.float32)
  y = layer(x, training=True).numpy()
  np.testing.assert_allclose(y.mean(0), layer.beta.numpy(), atol=1e-5)
