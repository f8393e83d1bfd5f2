"""The bfloat16 fast path of the trainer, per paper: bfloat16 compute where
intended, float32 losses and outputs, finite smoke steps of the trainer's
compiled step, and weights that move between float32 and bfloat16 in both
directions. Fine-tuning across precisions through the trainer's --init_from
(which loads weights the same way whatever the model) runs on lifting_deep,
the model whose non-trainable lifting constants are rebuilt in the build's
precision."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers import checkpoints
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


@pytest.fixture(scope='module')
def bf16_runs(tiny_data, tmp_path_factory):
  """name -> (workdir, TrainResult, losses) of a 2-step mixed_bfloat16 run,
  trained once per model and shared by the tests below."""
  runs = {}

  def get(name):
    if name not in runs:
      workdir = tmp_path_factory.mktemp(f'bf16_{name}')
      runs[name] = (workdir,) + _train(name, tiny_data, workdir,
                                       'mixed_bfloat16')
    return runs[name]

  return get


def _close_on_average(actual, expected):
  """Raw outputs agree on average up to bfloat16 rounding. (Not decoded
  poses: an argmax of a barely trained volume, or lifting_deep's choice
  among its prior's rotations, may jump under bfloat16 rounding.)"""
  for a, b in zip(tf.nest.flatten(actual), tf.nest.flatten(expected)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    scale = max(1e-3, float(np.abs(b).max()))
    assert np.abs(a - b).mean() <= 0.05 * scale


@pytest.mark.parametrize('name', MODELS)
def test_bfloat16_training_and_weights_in_both_precisions(name, bf16_runs):
  workdir, result, losses = bf16_runs(name)
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
  weights_lib.load_weights(float_model, str(workdir))
  # (lifting_deep's non-trainable lifting constants are recomputed from its
  # prior at build, in the build's precision.)
  loaded = {w.path: w.numpy() for w in float_model.weights}
  differ = [w.path for w in model.trainable_weights
            if not np.array_equal(w.numpy(), loaded[w.path])]
  assert not differ, differ
  float_outputs = float_model(x, training=False)
  _close_on_average(outputs, float_outputs)

  # And back: float32 final weights (as a float32 run writes them) loaded
  # into a bfloat16 model the way --init_from loads them.
  float_dir = workdir.parent / f'{workdir.name}_float32'
  float_dir.mkdir()
  checkpoints.write_final(str(float_dir), float_model, {
      'model': name, 'preset': 'smoke', 'steps': 2})
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    bf16_model = weights_lib.build_model(entry, model.config)
  finally:
    keras.mixed_precision.set_global_policy(previous)
  checkpoints.load_init_weights(bf16_model, str(float_dir), name, 'smoke')
  assert bf16_model.layers[0].compute_dtype == 'bfloat16'
  loaded = {w.path: w.numpy() for w in bf16_model.weights}
  differ = [w.path for w in float_model.trainable_weights
            if not np.array_equal(w.numpy(), loaded[w.path])]
  assert not differ, differ
  _close_on_average(bf16_model(x, training=False), float_outputs)


def test_fine_tuning_crosses_precisions_through_init_from(bf16_runs,
                                                          tiny_data,
                                                          tmp_path):
  name = 'lifting_deep'
  workdir, result, _ = bf16_runs(name)
  tuned, losses = _train(name, tiny_data, tmp_path / 'f32', 'float32',
                         init_from=str(workdir))
  assert tuned.model.layers[0].compute_dtype == 'float32'
  assert all(np.isfinite(losses))
  assert tuned.manifest['init_from']['sha256'] == result.manifest['sha256']
  again, losses = _train(name, tiny_data, tmp_path / 'bf16_again',
                         'mixed_bfloat16', init_from=str(tmp_path / 'f32'))
  assert again.model.layers[0].compute_dtype == 'bfloat16'
  assert all(np.isfinite(losses))
  assert again.manifest['precision'] == 'mixed_bfloat16'
  assert again.manifest['init_from']['sha256'] == tuned.manifest['sha256']


class ContractModel(keras.Model):
  """Outputs `out_dtype`; its loss is a scalar or, if not, one per example."""

  def __init__(self, out_dtype, scalar_loss=True):
    super().__init__()
    self.out_dtype, self.scalar_loss = out_dtype, scalar_loss

  def call(self, x, training=False):
    return {'joints_cam_mm': tf.cast(x['image'][:, :2, :3, 0], self.out_dtype)}

  def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
    error = tf.reduce_mean(tf.cast(y_pred['joints_cam_mm'], tf.float32)
                           - y['joints_cam_mm'], [1, 2])
    return tf.reduce_mean(error) if self.scalar_loss else error


CONTRACT_SPEC = ({'image': tf.TensorSpec([4, 8, 8, 3], tf.float32)},
                 {'joints_cam_mm': tf.TensorSpec([4, 2, 3], tf.float32)})


def test_contract_check_names_a_low_precision_output_and_a_batch_loss():
  """The trainer's check before fitting (traced on the input's spec)."""
  train_lib.check_contract(ContractModel(tf.float32), CONTRACT_SPEC)
  with pytest.raises(TypeError, match=r"output outputs\['joints_cam_mm'\] "
                     r'is bfloat16; model outputs must be float32'):
    train_lib.check_contract(ContractModel(tf.bfloat16), CONTRACT_SPEC)
  with pytest.raises(TypeError, match=r'float32 tensor of shape \(4,\); '
                     'expected a float32 scalar'):
    train_lib.check_contract(ContractModel(tf.float32, scalar_loss=False),
                             CONTRACT_SPEC)
