"""The bfloat16 fast path of the trainer, per paper: bfloat16 compute where
intended, float32 losses and outputs, finite smoke steps, and checkpoints
that move between float32 and bfloat16 in both directions."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers import train_lib
from zoo import base
from zoo import registry
from zoo import weights as weights_lib
from zoo.layers.normalization import BatchNormalization

# One model of each paper (the contract test runs every registered model).
MODELS = ['c2f_volumetric', 'lifting_deep', 'metrabs']


class _Losses(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.values = []

  def on_train_batch_end(self, batch, logs=None):
    self.values.append(float(logs['loss']))


def _train(model, tiny_data, workdir, precision, **kwargs):
  losses = _Losses()
  result = train_lib.train(model, preset='smoke', workdir=str(workdir),
                           data=tiny_data, steps=2, precision=precision,
                           strategy='default', run_evaluation=False,
                           progress=False, extra_callbacks=[losses],
                           command='pytest', **kwargs)
  return result, losses.values


def _inputs(config, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  s = config.input_size
  k = np.array([[s, 0., s / 2.], [0., s, s / 2.], [0., 0., 1.]], np.float32)
  return {'image': tf.constant(rng.uniform(0., 1., (batch, s, s, 3)),
                               tf.float32),
          'intrinsics': tf.constant(np.stack([k] * batch))}


def _layers(model):
  stack = [model]
  while stack:
    layer = stack.pop()
    yield layer
    stack.extend(layer._layers)  # pylint: disable=protected-access


@pytest.mark.parametrize('name', MODELS)
def test_bfloat16_training_then_float32_fine_tuning(name, tiny_data,
                                                    tmp_path):
  result, losses = _train(name, tiny_data, tmp_path / 'bf16',
                          'mixed_bfloat16')
  model = result.model
  assert losses and all(np.isfinite(losses))
  assert keras.mixed_precision.global_policy().name == 'float32'  # restored
  # bfloat16 compute in the convolutions and normalisations, float32 state.
  convs = [l for l in _layers(model) if isinstance(l, keras.layers.Conv2D)]
  norms = [l for l in _layers(model) if isinstance(l, BatchNormalization)]
  # (A head may be kept in float32 on purpose, as metrabs' is.)
  bf16_convs = [l for l in convs if l.compute_dtype == 'bfloat16']
  assert convs and len(bf16_convs) >= 0.8 * len(convs)
  assert all(l.compute_dtype == 'bfloat16' for l in norms)
  assert all(v.dtype == 'float32' for v in model.weights)
  x = _inputs(model.config)
  outputs = model(x, training=False)
  for value in tf.nest.flatten(outputs):
    assert value.dtype == tf.float32
  poses = model.predict_poses(x)
  assert set(base.OUTPUT_KEYS) <= set(poses)
  assert all(poses[k].dtype == tf.float32 for k in base.OUTPUT_KEYS)

  # The bfloat16 run's weights in a float32 model: the same predictions up
  # to bfloat16 rounding.
  entry = registry.get(name)
  float_model = weights_lib.build_model(entry, model.config)
  weights_lib.load_weights(float_model, str(tmp_path / 'bf16'))
  # (lifting_deep's non-trainable lifting constants are recomputed from its
  # prior at build, in the build's precision.)
  loaded = {w.path: w.numpy() for w in float_model.weights}
  differ = [w.path for w in model.trainable_weights
            if not np.array_equal(w.numpy(), loaded[w.path])]
  assert not differ, differ
  # (Raw outputs, on average, not decoded poses: an argmax of a barely
  # trained volume, or lifting_deep's choice among its prior's rotations,
  # may jump under bfloat16 rounding.)
  for bf16, f32 in zip(tf.nest.flatten(outputs),
                       tf.nest.flatten(float_model(x, training=False))):
    f32 = f32.numpy()
    assert np.all(np.isfinite(f32))
    scale = max(1e-3, float(np.abs(f32).max()))
    assert np.abs(bf16.numpy() - f32).mean() <= 0.05 * scale

  # Fine-tuning the bfloat16 checkpoint in float32, and back.
  tuned, losses = _train(name, tiny_data, tmp_path / 'f32', 'float32',
                         init_from=str(tmp_path / 'bf16'))
  assert tuned.model.layers[0].compute_dtype == 'float32'
  assert all(np.isfinite(losses))
  again, losses = _train(name, tiny_data, tmp_path / 'bf16_again',
                         'mixed_bfloat16', init_from=str(tmp_path / 'f32'))
  assert all(np.isfinite(losses))
  assert again.manifest['precision'] == 'mixed_bfloat16'
